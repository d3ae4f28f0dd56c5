"""``ErpApi`` for the sandbox's NetSuite-like ERP (REST records, JSON, decimal strings).

Every record Tandem creates carries the Tandem reference as its ``externalId``, which the
ERP keeps unique per record type; ``*_find`` lists the record type filtered by
``externalId``. Line items are named by the item's external id (``RemoteLine.product_ref``
is the ERP mapping's external id; the ERP creates the item on first use).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from orchestration.connectors.interfaces import (
    CustomerUpdating,
    ErpApi,
    ErpListing,
    ErpReceivablesApi,
    Party,
    RemoteLine,
    RemotePage,
    RemoteRecord,
)
from orchestration.connectors.transport import Transport

SYSTEM = "erp"


class SandboxErp:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)

    # --- customers ----------------------------------------------------------------------
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        """The customer whose ``externalId`` is ``reference`` (``ErpApi.customer_find``)."""
        found = self._find("customer_find", "customers", reference)
        return customer_record(found) if found is not None else None

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        """Create the customer, ``externalId`` = ``party.reference`` (``ErpApi.customer_create``).

        The ERP keeps ``externalId`` unique, so a second create of the same customer is refused
        (``PermanentError``); ``idempotency_key`` makes a retried create answer the first one.
        """
        body: dict[str, Any] = {
            "externalId": party.reference,
            "companyName": party.name,
            "currency": {"refName": party.currency.upper()},
        }
        if party.email:
            body["email"] = party.email
        if party.tax_id:
            body["vatRegNumber"] = party.tax_id
        if party.erp_subsidiary:
            body["subsidiary"] = {"id": party.erp_subsidiary}
        if party.address_line1 or party.city or party.postcode:
            body["billAddress"] = {
                "addr1": party.address_line1 or None,
                "city": party.city or None,
                "zip": party.postcode or None,
                "country": party.country.upper(),
            }
        response = self.transport.call(
            operation="customer_create",
            method="POST",
            path="customers",
            json=body,
            idempotency_key=idempotency_key,
        )
        return customer_record(response.body)

    # --- sales orders -------------------------------------------------------------------
    def sales_order_find(self, *, reference: str) -> RemoteRecord | None:
        """The sales order whose ``externalId`` is ``reference`` (``ErpApi.sales_order_find``)."""
        found = self._find("sales_order_find", "salesorders", reference)
        return sales_order_record(found) if found is not None else None

    def sales_order_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
        subsidiary: str = "",
    ) -> RemoteRecord:
        """Create the sales order with ``externalId`` = ``reference``, pending approval, in
        ``subsidiary`` (the customer's when empty) (``ErpApi.sales_order_create``); its lines
        name items by external id.
        """
        body: dict[str, Any] = {
            "externalId": reference,
            "entity": {"id": customer_id},
            "currency": {"refName": currency.upper()},
            "tranDate": order_date.isoformat(),
            "item": {"items": [line_body(line) for line in lines]},
        }
        if subsidiary:
            body["subsidiary"] = {"id": subsidiary}
        response = self.transport.call(
            operation="sales_order_create",
            method="POST",
            path="salesorders",
            json=body,
            idempotency_key=idempotency_key,
        )
        return sales_order_record(response.body)

    def sales_order_cancel(self, *, sales_order_id: str, idempotency_key: str) -> RemoteRecord:
        """Cancel a sales order pending approval or fulfillment (``ErpApi.sales_order_cancel``);
        any other status is refused with ``PermanentError`` (``INVALID_TRANS_STATUS``).
        """
        response = self.transport.call(
            operation="sales_order_cancel",
            method="POST",
            path=("salesorders", sales_order_id, "cancel"),
            json={},
            idempotency_key=idempotency_key,
        )
        return sales_order_record(response.body)

    # --- returns ------------------------------------------------------------------------
    def return_find(self, *, reference: str) -> RemoteRecord | None:
        """The return authorization whose ``externalId`` is ``reference``."""
        found = self._find("return_find", "returnauthorizations", reference)
        return sales_order_record(found) if found is not None else None

    def return_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        """A return authorization with ``externalId`` = ``reference`` (``ErpApi.return_create``),
        positive quantities, approved by the ERP at once."""
        response = self.transport.call(
            operation="return_create",
            method="POST",
            path="returnauthorizations",
            json={
                "externalId": reference,
                "entity": {"id": customer_id},
                "currency": {"refName": currency.upper()},
                "tranDate": order_date.isoformat(),
                "item": {"items": [line_body(line) for line in lines]},
            },
            idempotency_key=idempotency_key,
        )
        return sales_order_record(response.body)

    # --- invoices -----------------------------------------------------------------------
    def invoice_find(self, *, reference: str) -> RemoteRecord | None:
        """The invoice whose ``externalId`` is ``reference`` (``ErpApi.invoice_find``)."""
        found = self._find("invoice_find", "invoices", reference)
        return invoice_record(found) if found is not None else None

    def invoice_create(
        self,
        *,
        reference: str,
        customer_id: str,
        sales_order_id: str,
        currency: str,
        lines: list[RemoteLine],
        idempotency_key: str,
    ) -> RemoteRecord:
        """Bill ``sales_order_id`` (all its lines when ``lines`` is empty), or, without a
        sales order, invoice ``customer_id`` stand-alone for ``lines``."""
        body: dict[str, Any] = {
            "externalId": reference,
            "currency": {"refName": currency.upper()},
        }
        if sales_order_id:
            body["createdFrom"] = {"id": sales_order_id}
        else:
            body["entity"] = {"id": customer_id}
        if lines or not sales_order_id:
            body["item"] = {"items": [line_body(line) for line in lines]}
        response = self.transport.call(
            operation="invoice_create",
            method="POST",
            path="invoices",
            json=body,
            idempotency_key=idempotency_key,
        )
        return invoice_record(response.body)

    # --- customers kept up to date -----------------------------------------------------
    def customer_update(
        self, *, customer_id: str, party: Party, idempotency_key: str
    ) -> RemoteRecord:
        """Set the customer's name, email, tax id and address (``CustomerUpdating``): a
        ``PATCH`` (the same values again change nothing), then the customer read back."""
        self.transport.call(
            operation="customer_update",
            method="PATCH",
            path=("customers", customer_id),
            json={
                "companyName": party.name,
                "email": party.email or None,
                "vatRegNumber": party.tax_id or None,
                "billAddress": {
                    "addr1": party.address_line1 or None,
                    "city": party.city or None,
                    "zip": party.postcode or None,
                    "country": party.country.upper(),
                },
            },
            idempotency_key=idempotency_key,
        )
        response = self.transport.call(
            operation="customer_get", method="GET", path=("customers", customer_id)
        )
        return customer_record(response.body)

    # --- receivables (ErpReceivablesApi) ------------------------------------------------
    def credit_memo_find(self, *, reference: str) -> RemoteRecord | None:
        found = self._find("credit_memo_find", "creditmemos", reference)
        return receivable_record(found, "total") if found is not None else None

    def credit_memo_create(
        self,
        *,
        reference: str,
        invoice_id: str,
        currency: str,
        amount: Decimal,
        memo: str,
        idempotency_key: str,
    ) -> RemoteRecord:
        response = self.transport.call(
            operation="credit_memo_create",
            method="POST",
            path="creditmemos",
            json={
                "externalId": reference,
                "createdFrom": {"id": invoice_id},
                "currency": {"refName": currency.upper()},
                "total": format(amount, "f"),
                "memo": memo[:999],
            },
            idempotency_key=idempotency_key,
        )
        return receivable_record(response.body, "total")

    def payment_find(self, *, reference: str) -> RemoteRecord | None:
        found = self._find("payment_find", "customerpayments", reference)
        return receivable_record(found, "payment") if found is not None else None

    def payment_create(
        self,
        *,
        reference: str,
        customer_id: str,
        invoice_id: str,
        currency: str,
        amount: Decimal,
        received_on: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        response = self.transport.call(
            operation="payment_create",
            method="POST",
            path="customerpayments",
            json={
                "externalId": reference,
                "customer": {"id": customer_id},
                "currency": {"refName": currency.upper()},
                "tranDate": received_on.isoformat(),
                "payment": format(amount, "f"),
                "apply": {"doc": {"id": invoice_id}, "amount": format(amount, "f")},
            },
            idempotency_key=idempotency_key,
        )
        return receivable_record(response.body, "payment")

    def refund_find(self, *, reference: str) -> RemoteRecord | None:
        found = self._find("refund_find", "customerrefunds", reference)
        return receivable_record(found, "total") if found is not None else None

    def refund_create(
        self,
        *,
        reference: str,
        customer_id: str,
        payment_id: str,
        currency: str,
        amount: Decimal,
        idempotency_key: str,
    ) -> RemoteRecord:
        response = self.transport.call(
            operation="refund_create",
            method="POST",
            path="customerrefunds",
            json={
                "externalId": reference,
                "customer": {"id": customer_id},
                "currency": {"refName": currency.upper()},
                "total": format(amount, "f"),
                "apply": {"doc": {"id": payment_id}},
            },
            idempotency_key=idempotency_key,
        )
        return receivable_record(response.body, "total")

    # --- listings (reconciliation) -------------------------------------------------------
    def sales_orders_list(
        self, *, updated_since: dt.datetime | None, cursor: str = ""
    ) -> RemotePage:
        """One page of sales orders changed since ``updated_since`` (``ErpListing``)."""
        body = self._changes("sales_orders_list", "salesorders", updated_since, cursor)
        return erp_page(body, sales_order_listed)

    def invoices_list(self, *, updated_since: dt.datetime | None, cursor: str = "") -> RemotePage:
        """One page of invoices changed since ``updated_since`` (``ErpListing``)."""
        body = self._changes("invoices_list", "invoices", updated_since, cursor)
        return erp_page(body, invoice_listed)

    def _changes(
        self, operation: str, record_type: str, since: dt.datetime | None, cursor: str
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": int(cursor or 0)}
        if since is not None:
            params["updatedSince"] = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        response = self.transport.call(
            operation=operation, method="GET", path=record_type, params=params
        )
        return cast(dict[str, Any], response.body)

    def _find(self, operation: str, record_type: str, reference: str) -> dict[str, Any] | None:
        response = self.transport.call(
            operation=operation,
            method="GET",
            path=record_type,
            params={"externalId": reference},
        )
        items = response.body["items"]
        # externalId is unique per record type in the ERP: at most one match.
        return items[0] if items else None


def line_body(line: RemoteLine) -> dict[str, Any]:
    """A sales order or invoice line as the ERP takes it: item by external id, decimal strings."""
    body: dict[str, Any] = {
        "item": {"externalId": line.product_ref},
        "quantity": format(line.quantity, "f"),
        "rate": format(line.unit_price, "f"),
    }
    if line.description:
        body["description"] = line.description
    return body


def _ref(value: Any, key: str) -> str:
    return str((value or {}).get(key) or "")


def customer_record(body: dict[str, Any]) -> RemoteRecord:
    """The ERP's customer as a ``RemoteRecord`` (internal id, entity id as number)."""
    return RemoteRecord(
        id=str(body["internalId"]),
        status="inactive" if body.get("isInactive") else "active",
        number=str(body.get("entityId") or ""),
        data={
            "external_id": body.get("externalId") or "",
            "subsidiary_id": _ref(body.get("subsidiary"), "id"),
            "currency": _ref(body.get("currency"), "refName"),
        },
    )


def sales_order_record(body: dict[str, Any]) -> RemoteRecord:
    """The ERP's sales order as a ``RemoteRecord`` (``status`` is its ``orderStatus``)."""
    return RemoteRecord(
        id=str(body["internalId"]),
        status=str(body["orderStatus"]),
        number=str(body.get("tranId") or ""),
        data={
            "external_id": body.get("externalId") or "",
            "customer_id": _ref(body.get("entity"), "id"),
            "subsidiary_id": _ref(body.get("subsidiary"), "id"),
            "currency": _ref(body.get("currency"), "refName"),
            "total": str(body.get("total") or ""),
            "approved_at": body.get("approvedAt") or "",
        },
    )


def invoice_record(body: dict[str, Any]) -> RemoteRecord:
    """The ERP's invoice as a ``RemoteRecord`` (totals as decimal strings)."""
    return RemoteRecord(
        id=str(body["internalId"]),
        status=str(body["status"]),
        number=str(body.get("tranId") or ""),
        data={
            "external_id": body.get("externalId") or "",
            "customer_id": _ref(body.get("entity"), "id"),
            "sales_order_id": _ref(body.get("createdFrom"), "id"),
            "currency": _ref(body.get("currency"), "refName"),
            "total": str(body.get("total") or ""),
            "tax_total": str(body.get("taxTotal") or ""),
            "amount_remaining": str(body.get("amountRemaining") or ""),
            "due_date": body.get("dueDate") or "",
        },
    )


def receivable_record(body: dict[str, Any], amount_field: str) -> RemoteRecord:
    """A credit memo, customer payment or refund as a ``RemoteRecord`` (amount as text)."""
    return RemoteRecord(
        id=str(body["internalId"]),
        status=str(body.get("status") or ""),
        number=str(body.get("tranId") or ""),
        data={"external_id": body.get("externalId") or "", "amount": str(body[amount_field])},
    )


PAGE_SIZE = 1000


def erp_page(body: dict[str, Any], listed: Callable[[dict[str, Any]], RemoteRecord]) -> RemotePage:
    """A page of an ERP listing as ``RemotePage``; the cursor is the next page's offset."""
    records = [listed(item) for item in body["items"]]
    after = int(body.get("offset") or 0) + len(records)
    return RemotePage(records=records, cursor=str(after) if body.get("hasMore") else "")


def sales_order_listed(body: dict[str, Any]) -> RemoteRecord:
    return RemoteRecord(
        id=str(body["internalId"]),
        status=str(body["orderStatus"]),
        number=str(body.get("tranId") or ""),
        data={
            "reference": body.get("externalId") or "",
            "currency": _ref(body.get("currency"), "refName").upper(),
            "total": str(body.get("total") or "0"),
        },
    )


def invoice_listed(body: dict[str, Any]) -> RemoteRecord:
    total = Decimal(str(body.get("total") or "0"))
    remaining = Decimal(str(body.get("amountRemaining") or "0"))
    status = str(body["status"])
    if status == "paidInFull" or (status == "open" and remaining == 0 and total > 0):
        status = "paid"  # receivables applied payments until nothing remained
    return RemoteRecord(
        id=str(body["internalId"]),
        status=status,
        number=str(body.get("tranId") or ""),
        data={
            "reference": (body.get("externalId") or "").removesuffix("-OT"),
            "issue_date": body.get("tranDate") or "",
            "currency": _ref(body.get("currency"), "refName").upper(),
            "total": total,
            "tax": Decimal(str(body.get("taxTotal") or "0")),
            "amount_paid": total - remaining,
        },
    )


def _implements(connector: SandboxErp) -> ErpApi:
    return connector  # mypy checks that SandboxErp satisfies ErpApi


def _keeps_receivables(connector: SandboxErp) -> ErpReceivablesApi:
    return connector


def _updates_customers(connector: SandboxErp) -> CustomerUpdating:
    return connector


def _lists(connector: SandboxErp) -> ErpListing:
    return connector  # mypy checks that SandboxErp satisfies ErpListing
