"""``ErpApi`` for the sandbox's NetSuite-like ERP (REST records, JSON, decimal strings).

Every record Tandem creates carries the Tandem reference as its ``externalId``, which the
ERP keeps unique per record type; ``*_find`` lists the record type filtered by
``externalId``. Line items are named by the item's external id (``RemoteLine.product_ref``
is the ERP mapping's external id; the ERP creates the item on first use).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from orchestration.connectors.interfaces import ErpApi, Party, RemoteLine, RemoteRecord
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
    ) -> RemoteRecord:
        """Create the sales order with ``externalId`` = ``reference``, pending approval
        (``ErpApi.sales_order_create``); its lines name items by external id.
        """
        response = self.transport.call(
            operation="sales_order_create",
            method="POST",
            path="salesorders",
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


def _implements(connector: SandboxErp) -> ErpApi:
    return connector  # mypy checks that SandboxErp satisfies ErpApi
