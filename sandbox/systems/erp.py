"""A NetSuite-like ERP: customers, sales orders and invoices, looked up by ``externalId``.

Records have a numeric ``internalId`` (also ``id``) and a unique ``externalId`` per record
type; a second record with the same ``externalId`` is refused with ``DUP_RCRD``, and any
record can be read as ``/<type>/eid:<externalId>``. A sales order is created
``pendingApproval`` and becomes ``pendingFulfillment`` when finance approves it, after the
configured delay or through ``POST /_control/erp/approve/<internalId>``; that emits
``order.accepted``. An invoice (from a sales order or stand-alone) is posted ``open`` and
emits ``invoice.posted``. Amounts are decimal strings.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sandbox.errors import NETSUITE, ApiError
from sandbox.systems.base import (
    Call,
    Fields,
    Reply,
    Route,
    System,
    decimal_text,
    iso_utc,
    money,
    route,
)

CUSTOMER_FIELDS = (
    "externalId",
    "companyName",
    "email",
    "phone",
    "subsidiary",
    "currency",
    "vatRegNumber",
    "billAddress",
    "terms",
)
ADDRESS_FIELDS = ("addr1", "addr2", "city", "state", "zip", "country")
ORDER_FIELDS = (
    "externalId",
    "entity",
    "subsidiary",
    "currency",
    "tranDate",
    "startDate",
    "endDate",
    "memo",
    "otherRefNum",
    "item",
)
RETURN_FIELDS = (
    "externalId",
    "entity",
    "createdFrom",
    "subsidiary",
    "currency",
    "tranDate",
    "memo",
    "item",
)
LINE_FIELDS = ("item", "quantity", "rate", "amount", "description")
INVOICE_FIELDS = (
    "externalId",
    "createdFrom",
    "entity",
    "subsidiary",
    "currency",
    "tranDate",
    "memo",
    "item",
)
STATUS_LABELS = {
    "pendingApproval": "Pending Approval",
    "pendingFulfillment": "Pending Fulfillment",
    "fullyBilled": "Billed",
    "cancelled": "Cancelled",
    "rejected": "Rejected",
}
CREDIT_MEMO_FIELDS = (
    "externalId",
    "entity",
    "createdFrom",
    "currency",
    "tranDate",
    "memo",
    "total",
)
PAYMENT_FIELDS = ("externalId", "customer", "currency", "tranDate", "payment", "memo", "apply")
REFUND_FIELDS = ("externalId", "customer", "currency", "tranDate", "total", "memo", "apply")
_EID = re.compile(r"^eid:(?P<external>.+)$")


def ns_datetime(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ErpSystem(System):
    name = "erp"
    style = NETSUITE
    collections = (
        "customers",
        "salesorders",
        "invoices",
        "items",
        "_approval_due",
        "creditmemos",
        "customerpayments",
        "customerrefunds",
        "returnauthorizations",
    )

    def routes(self) -> list[Route]:
        return [
            route("GET", "/customers", self.customer_list),
            route("POST", "/customers", self.customer_create),
            route("GET", "/customers/{id}", self.customer_get),
            route("PATCH", "/customers/{id}", self.customer_update),
            route("PUT", "/customers/{id}", self.customer_upsert),
            route("GET", "/salesorders", self.order_list),
            route("POST", "/salesorders", self.order_create),
            route("GET", "/salesorders/{id}", self.order_get),
            route("POST", "/salesorders/{id}/cancel", self.order_cancel),
            route("GET", "/invoices", self.invoice_list),
            route("POST", "/invoices", self.invoice_create),
            route("GET", "/invoices/{id}", self.invoice_get),
            route("GET", "/creditmemos", self.credit_memo_list),
            route("POST", "/creditmemos", self.credit_memo_create),
            route("GET", "/customerpayments", self.payment_list),
            route("POST", "/customerpayments", self.payment_create),
            route("GET", "/customerrefunds", self.refund_list),
            route("POST", "/customerrefunds", self.refund_create),
            route("GET", "/returnauthorizations", self.return_list),
            route("POST", "/returnauthorizations", self.return_create),
            route("GET", "/returnauthorizations/{id}", self.return_get),
        ]

    def missing(self, name: str) -> ApiError:
        return ApiError(400, "USER_ERROR", f"Please enter value(s) for: {name}", field=name)

    def invalid(self, name: str, message: str) -> ApiError:
        return ApiError(400, "INVALID_FLD_VALUE", message, field=name)

    def unknown_field(self, name: str) -> ApiError:
        return ApiError(
            400,
            "INVALID_CONTENT",
            f"Error while accessing a resource. You have entered an invalid field name: {name}",
            field=name,
        )

    def not_found(self, kind: str, identifier: str) -> ApiError:
        return ApiError(
            404,
            "NONEXISTENT_ID",
            f"The record instance does not exist. Provide a valid record instance ID "
            f"({kind} {identifier}).",
        )

    # --- shared -------------------------------------------------------------------------
    def lookup(self, records: dict[str, Any], kind: str, identifier: str) -> dict[str, Any]:
        match = _EID.match(identifier)
        if match:
            for record in records.values():
                if record.get("externalId") == match["external"]:
                    return record
        elif identifier in records:
            return records[identifier]
        raise self.not_found(kind, identifier)

    def _unique_external(self, records: dict[str, Any], external: str | None, kind: str):
        if not external:
            return
        for record in records.values():
            if record.get("externalId") == external:
                raise ApiError(
                    400,
                    "DUP_RCRD",
                    f"This record already exists: a {kind} with externalId {external} "
                    f"(internalId {record['internalId']}).",
                    field="externalId",
                )

    def _reference(self, fields: Fields, name: str, *, required: bool = False):
        raw = fields.mapping(name, required=required)
        if raw is None:
            return None
        ref = fields.nested(raw, f"{name}.", ("id", "refName", "externalId"))
        value = {key: ref.string(key) for key in ("id", "refName", "externalId") if key in raw}
        if not value:
            raise self.missing(f"{name}.id")
        return value

    def _new_internal_id(self, call: Call, kind: str, start: int) -> str:
        return str(start + call.number(f"{kind}.internal") - 1)

    def _filtered(self, call: Call, records: dict[str, Any], names: tuple[str, ...]):
        """Records matching every filter given; ``updatedSince`` (ISO UTC) keeps those
        modified at or after it, and ``limit`` / ``offset`` page them (internal id order)."""
        wanted = {name: call.arg(name) for name in names if call.arg(name) is not None}
        since = call.arg("updatedSince")
        if since is not None:
            try:
                moment = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise self.invalid("updatedSince", f"{since!r} is not a timestamp") from None
            if moment.tzinfo is None:
                raise self.invalid("updatedSince", "updatedSince needs a time zone (Z)")
            since = ns_datetime(moment)
        found = []
        for record in records.values():
            if since is not None and record.get("lastModifiedDate", "") < since:
                continue
            ok = True
            for name, value in wanted.items():
                actual = record.get(name)
                if isinstance(actual, dict):
                    actual = actual.get("id")
                if actual != value:
                    ok = False
            if ok:
                found.append(record)
        limit, offset = self._page_arg(call, "limit", 1000), self._page_arg(call, "offset", None)
        total = len(found)
        offset = offset or 0
        page = found[offset : offset + limit] if limit else found[offset:]
        return Reply(
            200,
            {
                "links": [],
                "count": len(page),
                "hasMore": offset + len(page) < total,
                "offset": offset,
                "totalResults": total,
                "items": page,
            },
        )

    def _page_arg(self, call: Call, name: str, maximum: int | None) -> int | None:
        value = call.arg(name)
        if value is None:
            return None
        if not value.isdigit() or (maximum is not None and not 1 <= int(value) <= maximum):
            bound = f"between 1 and {maximum}" if maximum else "a non-negative integer"
            raise self.invalid(name, f"{name} must be {bound}")
        return int(value)

    # --- customers ----------------------------------------------------------------------
    def _customer_values(self, fields: Fields) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in ("externalId", "companyName", "email", "phone", "vatRegNumber", "terms"):
            if name in fields.body:
                values[name] = fields.string(name)
        for name in ("subsidiary", "currency"):
            if name in fields.body:
                values[name] = self._reference(fields, name)
        if "billAddress" in fields.body:
            raw = fields.mapping("billAddress")
            if raw is None:
                values["billAddress"] = None
            else:
                address = fields.nested(raw, "billAddress.", ADDRESS_FIELDS)
                values["billAddress"] = {name: address.string(name) for name in ADDRESS_FIELDS}
        return values

    def customer_create(self, call: Call) -> Reply:
        fields = self.check(call.body, CUSTOMER_FIELDS)
        fields.string("companyName", required=True)
        values = self._customer_values(fields)
        customers = call.collection("customers")
        self._unique_external(customers, values.get("externalId"), "customer")
        return Reply(201, self._customer_insert(call, values))

    def _customer_insert(self, call: Call, values: dict[str, Any]) -> dict[str, Any]:
        internal_id = self._new_internal_id(call, "customer", 1001)
        stamp = ns_datetime(call.now)
        customer = {
            "id": internal_id,
            "internalId": internal_id,
            "entityId": f"CUST{internal_id}",
            "externalId": None,
            "companyName": None,
            "email": None,
            "phone": None,
            "vatRegNumber": None,
            "terms": None,
            "subsidiary": {"id": "1"},
            "currency": {"refName": "USD"},
            "billAddress": None,
            "isInactive": False,
            **values,
            "dateCreated": stamp,
            "lastModifiedDate": stamp,
        }
        call.collection("customers")[internal_id] = customer
        return customer

    def customer_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("customers"), "customer", call.params["id"]))

    def customer_update(self, call: Call) -> Reply:
        customer = self.lookup(call.collection("customers"), "customer", call.params["id"])
        values = self._customer_values(self.check(call.body, CUSTOMER_FIELDS))
        if "externalId" in values and values["externalId"] != customer["externalId"]:
            others = {
                key: record
                for key, record in call.collection("customers").items()
                if key != customer["internalId"]
            }
            self._unique_external(others, values["externalId"], "customer")
        if "companyName" in values and not values["companyName"]:
            raise self.missing("companyName")
        customer.update(values, lastModifiedDate=ns_datetime(call.now))
        return Reply(204)

    def customer_upsert(self, call: Call) -> Reply:
        """``PUT /customers/eid:<externalId>``: create or update by external id."""
        match = _EID.match(call.params["id"])
        if not match:
            raise ApiError(
                400,
                "INVALID_REQUEST",
                "Upsert needs an external id in the path: /customers/eid:<externalId>.",
            )
        fields = self.check(call.body, CUSTOMER_FIELDS)
        values = self._customer_values(fields)
        values["externalId"] = match["external"]
        customers = call.collection("customers")
        existing = next(
            (c for c in customers.values() if c["externalId"] == match["external"]), None
        )
        if existing is None:
            fields.string("companyName", required=True)
            return Reply(201, self._customer_insert(call, values))
        existing.update(values, lastModifiedDate=ns_datetime(call.now))
        return Reply(200, existing)

    def customer_list(self, call: Call) -> Reply:
        return self._filtered(call, call.collection("customers"), ("externalId", "email"))

    # --- sales orders -------------------------------------------------------------------
    def _lines(self, call: Call, fields: Fields) -> list[dict[str, Any]]:
        raw = fields.mapping("item", required=True)
        assert raw is not None
        container = fields.nested(raw, "item.", ("items",))
        raw_lines = container.items("items", required=True)
        items = call.collection("items")
        lines = []
        for number, raw_line in enumerate(raw_lines, start=1):
            line = fields.nested(raw_line, f"item.items[{number - 1}].", LINE_FIELDS)
            reference = self._reference(line, "item", required=True)
            quantity = line.decimal("quantity", required=True, minimum=Decimal("0.0001"))
            rate = line.decimal("rate", required=True)
            assert reference is not None and quantity is not None and rate is not None
            amount = line.decimal("amount")
            computed = (quantity * rate).quantize(Decimal("0.01"))
            if amount is not None and amount.quantize(Decimal("0.01")) != computed:
                raise self.invalid(
                    f"item.items[{number - 1}].amount",
                    f"Amount {amount} does not equal quantity x rate ({computed}).",
                )
            lines.append(
                {
                    "line": number,
                    "item": self._item(call, items, reference),
                    "description": line.string("description", max_length=4000),
                    "quantity": decimal_text(quantity),
                    "rate": money(rate),
                    "amount": money(computed),
                }
            )
        return lines

    def _item(self, call: Call, items: dict[str, Any], reference: dict[str, Any]):
        """The item a line names; items are created on first use from their external id."""
        if reference.get("id"):
            if reference["id"] not in items:
                raise self.not_found("item", reference["id"])
            item = items[reference["id"]]
        else:
            external = reference.get("externalId") or reference.get("refName")
            item = next((i for i in items.values() if i["externalId"] == external), None)
            if item is None:
                internal_id = self._new_internal_id(call, "item", 301)
                item = {"id": internal_id, "externalId": external, "refName": external}
                items[internal_id] = item
        return dict(item)

    def order_create(self, call: Call) -> Reply:
        fields = self.check(call.body, ORDER_FIELDS)
        external = fields.string("externalId")
        orders = call.collection("salesorders")
        self._unique_external(orders, external, "sales order")
        entity_ref = self._reference(fields, "entity", required=True)
        assert entity_ref is not None
        customer = self._entity(call, entity_ref)
        tran_date = fields.date("tranDate") or call.now.date()
        start, end = fields.date("startDate"), fields.date("endDate")
        lines = self._lines(call, fields)
        subsidiary = self._reference(fields, "subsidiary") or customer["subsidiary"]
        currency = self._reference(fields, "currency") or customer["currency"]
        memo = fields.string("memo", max_length=999)
        other_ref = fields.string("otherRefNum")
        internal_id = self._new_internal_id(call, "salesorder", 5001)
        total = money(sum((Decimal(line["amount"]) for line in lines), Decimal(0)))
        stamp = ns_datetime(call.now)
        order = {
            "id": internal_id,
            "internalId": internal_id,
            "tranId": f"SO{10000 + call.number('salesorder.tranid')}",
            "externalId": external,
            "entity": {"id": customer["internalId"], "refName": customer["companyName"]},
            "subsidiary": subsidiary,
            "currency": currency,
            "tranDate": tran_date.isoformat(),
            "startDate": start.isoformat() if start else None,
            "endDate": end.isoformat() if end else None,
            "memo": memo,
            "otherRefNum": other_ref,
            "orderStatus": "pendingApproval",
            "status": STATUS_LABELS["pendingApproval"],
            "subtotal": total,
            "total": total,
            "item": {"items": lines},
            "approvedAt": None,
            "createdDate": stamp,
            "lastModifiedDate": stamp,
        }
        orders[internal_id] = order
        delay = call.settings.get("erp_approval_delay_s")
        if delay is not None:
            call.collection("_approval_due")[internal_id] = call.now.timestamp() + delay
        return Reply(201, order)

    def _entity(self, call: Call, reference: dict[str, Any]) -> dict[str, Any]:
        customers = call.collection("customers")
        if reference.get("id"):
            identifier = reference["id"]
        elif reference.get("externalId"):
            identifier = f"eid:{reference['externalId']}"
        else:
            raise self.missing("entity.id")
        try:
            return self.lookup(customers, "customer", identifier)
        except ApiError:
            raise ApiError(
                400,
                "INVALID_KEY_OR_REF",
                f"Invalid entity reference key {identifier}.",
                field="entity",
            ) from None

    def order_get(self, call: Call) -> Reply:
        return Reply(
            200, self.lookup(call.collection("salesorders"), "sales order", call.params["id"])
        )

    def order_list(self, call: Call) -> Reply:
        return self._filtered(
            call, call.collection("salesorders"), ("externalId", "entity", "orderStatus", "tranId")
        )

    def order_cancel(self, call: Call) -> Reply:
        order = self.lookup(call.collection("salesorders"), "sales order", call.params["id"])
        self.check(call.body, ("memo",))
        if order["orderStatus"] not in ("pendingApproval", "pendingFulfillment"):
            raise ApiError(
                400,
                "INVALID_TRANS_STATUS",
                f"Sales order {order['tranId']} is {order['status']} and cannot be cancelled.",
            )
        order_set_status(order, "cancelled", call.now)
        call.collection("_approval_due").pop(order["internalId"], None)
        return Reply(200, order)

    # --- invoices -----------------------------------------------------------------------
    def invoice_create(self, call: Call) -> Reply:
        """An open invoice, of a sales order pending fulfillment (``createdFrom``, which it
        bills in full) or of a customer; announced at once (``invoice.posted``)."""
        fields = self.check(call.body, INVOICE_FIELDS)
        external = fields.string("externalId")
        invoices = call.collection("invoices")
        self._unique_external(invoices, external, "invoice")
        tran_date = fields.date("tranDate") or call.now.date()
        order, customer, lines = self._invoice_source(call, fields)
        subsidiary = self._reference(fields, "subsidiary") or (
            order["subsidiary"] if order else customer["subsidiary"]
        )
        currency = self._reference(fields, "currency") or (
            order["currency"] if order else customer["currency"]
        )
        memo = fields.string("memo", max_length=999)
        internal_id = self._new_internal_id(call, "invoice", 8001)
        total = money(sum((Decimal(line["amount"]) for line in lines), Decimal(0)))
        stamp = ns_datetime(call.now)
        invoice = {
            "id": internal_id,
            "internalId": internal_id,
            "tranId": f"INV{10000 + call.number('invoice.tranid')}",
            "externalId": external,
            "entity": {"id": customer["internalId"], "refName": customer["companyName"]},
            "createdFrom": {"id": order["internalId"], "refName": f"Sales Order #{order['tranId']}"}
            if order
            else None,
            "subsidiary": subsidiary,
            "currency": currency,
            "tranDate": tran_date.isoformat(),
            "dueDate": (tran_date + dt.timedelta(days=30)).isoformat(),
            "memo": memo,
            "status": "open",
            "subtotal": total,
            "taxTotal": "0.00",
            "total": total,
            "amountRemaining": total,
            "item": {"items": lines},
            "createdDate": stamp,
            "lastModifiedDate": stamp,
        }
        invoices[internal_id] = invoice
        if order is not None:
            order_set_status(order, "fullyBilled", call.now)
        call.emit(
            "invoice.posted",
            erp_invoice_posted_data(invoice, order),
            correlation_id=order["externalId"] if order else external,
        )
        return Reply(201, invoice)

    def _invoice_source(
        self, call: Call, fields: Fields
    ) -> tuple[dict[str, Any] | None, dict[str, Any], list[dict[str, Any]]]:
        """(sales order, customer, lines) an invoice bills: the order's lines unless ``item``
        is given; without ``createdFrom``, the ``entity``'s customer and the given lines."""
        created_from = self._reference(fields, "createdFrom")
        if created_from is None:
            entity_ref = self._reference(fields, "entity", required=True)
            assert entity_ref is not None
            customer = self._entity(call, entity_ref)
            return None, customer, self._lines(call, fields)
        orders = call.collection("salesorders")
        identifier = created_from.get("id") or f"eid:{created_from.get('externalId')}"
        try:
            order = self.lookup(orders, "sales order", identifier)
        except ApiError:
            order = None
        if order is None or order["orderStatus"] != "pendingFulfillment":
            raise ApiError(
                400,
                "INVALID_INITIALIZE_REF",
                f"You can not initialize invoice: invalid reference {identifier}.",
                field="createdFrom",
            )
        customer = call.collection("customers")[order["entity"]["id"]]
        lines = [dict(line) for line in order["item"]["items"]]
        if "item" in call.body:
            lines = self._lines(call, fields)
        return order, customer, lines

    def invoice_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("invoices"), "invoice", call.params["id"]))

    def invoice_list(self, call: Call) -> Reply:
        return self._filtered(
            call, call.collection("invoices"), ("externalId", "entity", "createdFrom", "tranId")
        )

    # --- receivables --------------------------------------------------------------------
    def credit_memo_create(self, call: Call) -> Reply:
        return credit_memo_create(self, call)

    def credit_memo_list(self, call: Call) -> Reply:
        return self._filtered(call, call.collection("creditmemos"), ("externalId", "createdFrom"))

    def payment_create(self, call: Call) -> Reply:
        return payment_create(self, call)

    def payment_list(self, call: Call) -> Reply:
        return self._filtered(call, call.collection("customerpayments"), ("externalId", "customer"))

    def refund_create(self, call: Call) -> Reply:
        return refund_create(self, call)

    def refund_list(self, call: Call) -> Reply:
        return self._filtered(call, call.collection("customerrefunds"), ("externalId", "customer"))

    # --- return authorizations -----------------------------------------------------------
    def return_create(self, call: Call) -> Reply:
        """A return authorization (a credit for goods or service given back): quantities are
        positive like a sale's, a negative line is refused as on a sales order. Approved at
        once (``pendingReceipt``); ``createdFrom`` may name the sales order it returns from."""
        fields = self.check(call.body, RETURN_FIELDS)
        external = fields.string("externalId")
        returns = call.collection("returnauthorizations")
        self._unique_external(returns, external, "return authorization")
        entity_ref = self._reference(fields, "entity", required=True)
        assert entity_ref is not None
        customer = self._entity(call, entity_ref)
        created_from = self._reference(fields, "createdFrom")
        lines = self._lines(call, fields)
        internal_id = self._new_internal_id(call, "returnauthorization", 7001)
        total = money(sum((Decimal(line["amount"]) for line in lines), Decimal(0)))
        stamp = ns_datetime(call.now)
        record = {
            "id": internal_id,
            "internalId": internal_id,
            "tranId": f"RMA{10000 + call.number('returnauthorization.tranid')}",
            "externalId": external,
            "entity": {"id": customer["internalId"], "refName": customer["companyName"]},
            "createdFrom": created_from,
            "subsidiary": self._reference(fields, "subsidiary") or customer["subsidiary"],
            "currency": self._reference(fields, "currency") or customer["currency"],
            "tranDate": (fields.date("tranDate") or call.now.date()).isoformat(),
            "memo": fields.string("memo", max_length=999),
            "orderStatus": "pendingReceipt",
            "status": "Pending Receipt",
            "total": total,
            "item": {"items": lines},
            "createdDate": stamp,
            "lastModifiedDate": stamp,
        }
        returns[internal_id] = record
        return Reply(201, record)

    def return_get(self, call: Call) -> Reply:
        return Reply(
            200,
            self.lookup(
                call.collection("returnauthorizations"), "return authorization", call.params["id"]
            ),
        )

    def return_list(self, call: Call) -> Reply:
        return self._filtered(
            call, call.collection("returnauthorizations"), ("externalId", "entity", "tranId")
        )


# --- receivables: credit memos, customer payments, customer refunds ----------------------
# A credit memo credits an invoice (``createdFrom``) and lowers what remains due on it; a
# customer payment is applied to one invoice, never for more than remains due; a customer
# refund gives money back on a payment, never more than it brought. Each is unique by
# ``externalId`` like every record.


def _receivable_external(system: ErpSystem, call: Call, fields: Fields, collection: str) -> Any:
    external = fields.string("externalId")
    system._unique_external(call.collection(collection), external, collection.rstrip("s"))
    return external


def _amount(system: ErpSystem, fields: Fields, name: str) -> Decimal:
    value = fields.decimal(name, required=True, minimum=Decimal("0.01"))
    assert value is not None
    return value


def _invoice_open(system: ErpSystem, call: Call, reference: dict[str, Any], field: str):
    identifier = reference.get("id") or f"eid:{reference.get('externalId')}"
    try:
        invoice = system.lookup(call.collection("invoices"), "invoice", identifier)
    except ApiError:
        raise ApiError(
            400, "INVALID_KEY_OR_REF", f"Invalid {field} reference key {identifier}.", field=field
        ) from None
    return invoice


def _invoice_lower(invoice: dict[str, Any], amount: Decimal, what: str, now: dt.datetime) -> None:
    remaining = Decimal(invoice["amountRemaining"])
    if invoice["status"] != "open" or amount > remaining:
        raise ApiError(
            400,
            "INVALID_FLD_VALUE",
            f"The {what} of {money(amount)} exceeds the {money(remaining)} remaining on invoice "
            f"{invoice['tranId']} ({invoice['status']}).",
            field="amount",
        )
    remaining -= amount
    invoice["amountRemaining"] = money(remaining)
    if remaining == 0:
        invoice["status"] = "paidInFull"
    invoice["lastModifiedDate"] = ns_datetime(now)


def credit_memo_create(system: ErpSystem, call: Call) -> Reply:
    fields = system.check(call.body, CREDIT_MEMO_FIELDS)
    external = _receivable_external(system, call, fields, "creditmemos")
    source = system._reference(fields, "createdFrom", required=True)
    assert source is not None
    invoice = _invoice_open(system, call, source, "createdFrom")
    total = _amount(system, fields, "total")
    applied = min(total, Decimal(invoice["amountRemaining"]))
    if invoice["status"] == "open" and applied > 0:
        _invoice_lower(invoice, applied, "credit", call.now)
    internal_id = system._new_internal_id(call, "creditmemo", 9001)
    stamp = ns_datetime(call.now)
    memo = {
        "id": internal_id,
        "internalId": internal_id,
        "tranId": f"CM{10000 + call.number('creditmemo.tranid')}",
        "externalId": external,
        "entity": dict(invoice["entity"]),
        "createdFrom": {"id": invoice["internalId"], "refName": f"Invoice #{invoice['tranId']}"},
        "subsidiary": invoice["subsidiary"],
        "currency": system._reference(fields, "currency") or invoice["currency"],
        "tranDate": (fields.date("tranDate") or call.now.date()).isoformat(),
        "memo": fields.string("memo", max_length=999),
        "total": money(total),
        "applied": money(applied),
        "unapplied": money(total - applied),
        "status": "fullyApplied" if applied == total else "open",
        "createdDate": stamp,
        "lastModifiedDate": stamp,
    }
    call.collection("creditmemos")[internal_id] = memo
    return Reply(201, memo)


def _customer_and_doc(
    system: ErpSystem, call: Call, fields: Fields, apply_fields: tuple[str, ...]
) -> tuple[dict[str, Any], Fields, dict[str, Any]]:
    """A payment's or refund's customer (required), its ``apply`` block and the document it
    applies to (``apply.doc``, required)."""
    customer_ref = system._reference(fields, "customer", required=True)
    assert customer_ref is not None
    customer = system._entity(call, customer_ref)
    raw_apply = fields.mapping("apply", required=True)
    assert raw_apply is not None
    apply = fields.nested(raw_apply, "apply.", apply_fields)
    doc = system._reference(apply, "doc", required=True)
    assert doc is not None
    return customer, apply, doc


def payment_create(system: ErpSystem, call: Call) -> Reply:
    fields = system.check(call.body, PAYMENT_FIELDS)
    external = _receivable_external(system, call, fields, "customerpayments")
    customer, apply, doc = _customer_and_doc(system, call, fields, ("doc", "amount"))
    amount = _amount(system, fields, "payment")
    invoice = _invoice_open(system, call, doc, "apply.doc")
    if invoice["entity"]["id"] != customer["internalId"]:
        raise system.invalid("apply.doc", "The invoice belongs to another customer.")
    applied = apply.decimal("amount") or amount
    if applied != amount:
        raise system.invalid("apply.amount", "The applied amount must equal the payment.")
    _invoice_lower(invoice, amount, "payment", call.now)
    internal_id = system._new_internal_id(call, "customerpayment", 12001)
    stamp = ns_datetime(call.now)
    payment = {
        "id": internal_id,
        "internalId": internal_id,
        "tranId": f"PYMT{10000 + call.number('customerpayment.tranid')}",
        "externalId": external,
        "customer": {"id": customer["internalId"], "refName": customer["companyName"]},
        "currency": system._reference(fields, "currency") or invoice["currency"],
        "tranDate": (fields.date("tranDate") or call.now.date()).isoformat(),
        "memo": fields.string("memo", max_length=999),
        "payment": money(amount),
        "refunded": money(Decimal(0)),
        "apply": {"doc": {"id": invoice["internalId"]}, "amount": money(amount)},
        "status": "deposited",
        "createdDate": stamp,
        "lastModifiedDate": stamp,
    }
    call.collection("customerpayments")[internal_id] = payment
    return Reply(201, payment)


def refund_create(system: ErpSystem, call: Call) -> Reply:
    fields = system.check(call.body, REFUND_FIELDS)
    external = _receivable_external(system, call, fields, "customerrefunds")
    customer, _apply, doc = _customer_and_doc(system, call, fields, ("doc",))
    total = _amount(system, fields, "total")
    payments = call.collection("customerpayments")
    try:
        payment = system.lookup(
            payments, "payment", doc.get("id") or f"eid:{doc.get('externalId')}"
        )
    except ApiError:
        raise ApiError(
            400, "INVALID_KEY_OR_REF", "Invalid apply.doc reference key.", field="apply.doc"
        ) from None
    left = Decimal(payment["payment"]) - Decimal(payment["refunded"])
    if total > left:
        raise system.invalid(
            "total", f"The refund of {money(total)} exceeds the {money(left)} left on the payment."
        )
    payment["refunded"] = money(Decimal(payment["refunded"]) + total)
    internal_id = system._new_internal_id(call, "customerrefund", 14001)
    stamp = ns_datetime(call.now)
    refund = {
        "id": internal_id,
        "internalId": internal_id,
        "tranId": f"RFND{10000 + call.number('customerrefund.tranid')}",
        "externalId": external,
        "customer": {"id": customer["internalId"], "refName": customer["companyName"]},
        "currency": system._reference(fields, "currency") or payment["currency"],
        "tranDate": (fields.date("tranDate") or call.now.date()).isoformat(),
        "memo": fields.string("memo", max_length=999),
        "total": money(total),
        "apply": {"doc": {"id": payment["internalId"]}},
        "status": "issued",
        "createdDate": stamp,
        "lastModifiedDate": stamp,
    }
    call.collection("customerrefunds")[internal_id] = refund
    return Reply(201, refund)


def order_reject(order: dict[str, Any], now: dt.datetime, reason: str) -> dict[str, Any]:
    """Reject a pending sales order; return the ``order.rejected`` payload."""
    order_set_status(order, "rejected", now)
    order["memo"] = reason[:999]
    return {
        "order_id": order["externalId"],
        "erp_sales_order_id": order["internalId"],
        "rejected_at": iso_utc(now),
        "reason": reason,
    }


def order_set_status(order: dict[str, Any], status: str, now: dt.datetime) -> None:
    order["orderStatus"] = status
    order["status"] = STATUS_LABELS[status]
    order["lastModifiedDate"] = ns_datetime(now)


def order_approve(order: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Approve a pending sales order; return the ``order.accepted`` payload."""
    order_set_status(order, "pendingFulfillment", now)
    order["approvedAt"] = ns_datetime(now)
    return {
        "order_id": order["externalId"],
        "erp_sales_order_id": order["internalId"],
        "erp_tran_id": order["tranId"],
        "accepted_at": iso_utc(now),
        "subsidiary": (order["subsidiary"] or {}).get("id") or "",
        "total_amount": order["total"],
        "currency": (order["currency"] or {}).get("refName"),
    }


def erp_invoice_posted_data(invoice: dict[str, Any], order: dict[str, Any] | None):
    """The canonical ``invoice.posted`` payload for a posted ERP invoice."""
    return {
        "external_invoice_id": invoice["internalId"],
        "invoice_number": invoice["tranId"],
        "tandem_reference": invoice["externalId"],
        "order_id": order["externalId"] if order else None,
        "contract_id": None,
        "erp_sales_order_id": order["internalId"] if order else None,
        "currency": (invoice["currency"] or {}).get("refName") or "USD",
        "total_amount": invoice["total"],
        "tax_amount": invoice["taxTotal"],
        "issue_date": invoice["tranDate"],
        "due_date": invoice["dueDate"],
        "lines": [
            {
                "description": line["description"] or line["item"].get("refName") or "",
                "product_code": line["item"].get("externalId") or line["item"]["id"],
                "quantity": line["quantity"],
                "unit_price": line["rate"],
                "amount": line["amount"],
            }
            for line in invoice["item"]["items"]
        ],
    }


def order_line_edit(
    order: dict[str, Any], line_no: int, changes: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """Change a sales order line's quantity and/or rate as a person would in the ERP's own
    screen (no event is sent); the amounts and totals follow. Raises ``LookupError`` for an
    unknown line, ``ValueError`` for a bad value."""
    lines = order["item"]["items"]
    line = next((candidate for candidate in lines if candidate["line"] == line_no), None)
    if line is None:
        raise LookupError(f"sales order {order['internalId']} has no line {line_no}")
    unknown = set(changes) - {"quantity", "rate"}
    if unknown or not changes:
        raise ValueError("give quantity and/or rate, nothing else")
    try:
        quantity = Decimal(str(changes.get("quantity", line["quantity"])))
        rate = Decimal(str(changes.get("rate", line["rate"])))
    except ArithmeticError:
        raise ValueError("quantity and rate must be numbers") from None
    if not quantity.is_finite() or not rate.is_finite() or quantity <= 0:
        raise ValueError("quantity must be positive and rate a number")
    line.update(quantity=decimal_text(quantity), rate=money(rate), amount=money(quantity * rate))
    total = money(sum((Decimal(candidate["amount"]) for candidate in lines), Decimal(0)))
    order.update(subtotal=total, total=total, lastModifiedDate=ns_datetime(now))
    return order
