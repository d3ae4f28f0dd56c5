"""A Salesforce-CPQ-like quoting system: quotes with lines, approved into ``quote.approved``.

Quotes reference CRM accounts (CPQ lives in the CRM's org), so the account must exist in the
simulated CRM. Products are created on first use from their ``ProductCode``. Numbers are
decimal strings; lines carry list price, discount and net price like ``SBQQ__QuoteLine__c``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sandbox.errors import ApiError
from sandbox.systems.base import (
    Call,
    Fields,
    Reply,
    Route,
    add_months,
    decimal_text,
    iso_utc,
    money,
    route,
)
from sandbox.systems.salesforce import (
    SalesforceSystem,
    query_result,
    sf_datetime,
    sf_parse_datetime,
)

QUOTE_FIELDS = (
    "SBQQ__Account__c",
    "CurrencyIsoCode",
    "SBQQ__StartDate__c",
    "SBQQ__SubscriptionTerm__c",
    "SBQQ__ExpirationDate__c",
    "SBQQ__PaymentTerms__c",
    "Legal_Entity__c",
    "lines",
)
LINE_FIELDS = (
    "ProductCode",
    "SBQQ__ProductName__c",
    "SBQQ__Description__c",
    "SBQQ__Quantity__c",
    "SBQQ__ListPrice__c",
    "SBQQ__Discount__c",
    "SBQQ__NetPrice__c",
    "SBQQ__ChargeType__c",
    "SBQQ__BillingFrequency__c",
    "SBQQ__SubscriptionTerm__c",
    "SBQQ__StartDate__c",
)
CHARGE_TYPES = {"Recurring": "recurring", "One-Time": "one_time", "Usage": "usage"}
FREQUENCIES = {"Monthly": "month", "Quarterly": "quarter", "Annual": "year"}
HUNDRED = Decimal(100)


class CpqSystem(SalesforceSystem):
    name = "cpq"
    sobject = "SBQQ__Quote__c"
    collections = ("quotes", "products", "contract_changes")

    def routes(self) -> list[Route]:
        return [
            route("POST", "/contracts/{id}/{change}", self.contract_change),
            route("GET", "/contract_changes", self.contract_change_list),
            route("GET", "/quotes", self.quote_list),
            route("POST", "/quotes", self.quote_create),
            route("GET", "/quotes/{id}", self.quote_get),
            route("POST", "/quotes/{id}/approve", self.quote_approve),
        ]

    def _product(self, call: Call, code: str, name: str | None) -> dict[str, Any]:
        products = call.collection("products")
        product = products.get(code)
        if product is None:
            product = {
                "attributes": {"type": "Product2"},
                "Id": call.salesforce_id("01t"),
                "ProductCode": code,
                "Name": name or code,
            }
            products[code] = product
        return product

    def _line_values(self, call: Call, raw: Any, number: int, quote: dict[str, Any]):
        prefix = f"lines[{number - 1}]."
        fields = Fields(self, {}).nested(raw, prefix, LINE_FIELDS)
        code = fields.string("ProductCode", required=True, max_length=80)
        charge_type = fields.choice("SBQQ__ChargeType__c", tuple(CHARGE_TYPES), required=True)
        quantity = fields.decimal("SBQQ__Quantity__c", required=True, minimum=Decimal("0.0001"))
        list_price = fields.decimal("SBQQ__ListPrice__c", minimum=Decimal(0))
        net_price = fields.decimal("SBQQ__NetPrice__c", minimum=Decimal(0))
        discount = fields.decimal("SBQQ__Discount__c", minimum=Decimal(0))
        assert code is not None and charge_type is not None and quantity is not None
        if list_price is None and net_price is None:
            raise self.missing(f"{prefix}SBQQ__ListPrice__c")
        if discount is not None and discount > HUNDRED:
            raise self.invalid(f"{prefix}SBQQ__Discount__c", "Discount cannot exceed 100%")
        if list_price is None:
            list_price = net_price
        assert list_price is not None
        if discount is None:
            discount = (
                (HUNDRED - net_price * HUNDRED / list_price).quantize(Decimal("0.0001"))
                if net_price is not None and list_price
                else Decimal(0)
            )
        if net_price is None:
            net_price = (list_price * (HUNDRED - discount) / HUNDRED).quantize(Decimal("0.01"))
        recurring = charge_type != "One-Time"
        frequency = fields.choice("SBQQ__BillingFrequency__c", tuple(FREQUENCIES))
        if recurring and frequency is None:
            frequency = "Monthly"
        term = fields.integer("SBQQ__SubscriptionTerm__c", minimum=1)
        start = fields.date("SBQQ__StartDate__c")
        term = term or quote["SBQQ__SubscriptionTerm__c"]
        start_text = start.isoformat() if start else quote["SBQQ__StartDate__c"]
        end_text = None
        if recurring:
            end = add_months(dt.date.fromisoformat(start_text), term) - dt.timedelta(days=1)
            end_text = end.isoformat()
        product = self._product(call, code, fields.string("SBQQ__ProductName__c"))
        return {
            "attributes": {"type": "SBQQ__QuoteLine__c"},
            "Id": call.salesforce_id("a0w"),
            "Name": f"QL-{call.number('line_name'):07d}",
            "SBQQ__Quote__c": quote["Id"],
            "SBQQ__Number__c": number,
            "SBQQ__Product__c": product["Id"],
            "SBQQ__Product__r": {"ProductCode": code, "Name": product["Name"]},
            "SBQQ__ProductCode__c": code,
            "SBQQ__Description__c": fields.string("SBQQ__Description__c") or product["Name"],
            "SBQQ__ChargeType__c": charge_type,
            "SBQQ__BillingFrequency__c": frequency if recurring else None,
            "SBQQ__SubscriptionPricing__c": "Fixed Price" if recurring else None,
            "SBQQ__Quantity__c": decimal_text(quantity),
            "SBQQ__ListPrice__c": money(list_price),
            "SBQQ__Discount__c": decimal_text(discount),
            "SBQQ__NetPrice__c": money(net_price),
            "SBQQ__NetTotal__c": money(net_price * quantity),
            "SBQQ__SubscriptionTerm__c": term if recurring else None,
            "SBQQ__StartDate__c": start_text if recurring else None,
            "SBQQ__EndDate__c": end_text,
        }

    def quote_create(self, call: Call) -> Reply:
        fields = self.check(call.body, QUOTE_FIELDS)
        account_id = fields.string("SBQQ__Account__c", required=True)
        assert account_id is not None
        accounts = call.collection("accounts", system="crm")
        if self.record_id(account_id) not in accounts:
            raise ApiError(
                400,
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id: {account_id}",
                field="SBQQ__Account__c",
            )
        currency = fields.currency("CurrencyIsoCode", required=True)
        start = fields.date("SBQQ__StartDate__c", required=True)
        term = fields.integer("SBQQ__SubscriptionTerm__c", required=True, minimum=1)
        expiration = fields.date("SBQQ__ExpirationDate__c")
        raw_lines = fields.items("lines", required=True)
        assert currency is not None and start is not None and term is not None
        identifier = call.salesforce_id("a0x")
        stamp = sf_datetime(call.now)
        quote: dict[str, Any] = {
            "attributes": {"type": "SBQQ__Quote__c", "url": f"/cpq/quotes/{identifier}"},
            "Id": identifier,
            "Name": f"Q-{call.number('quote_name'):05d}",
            "SBQQ__Account__c": self.record_id(account_id),
            "SBQQ__Status__c": "Draft",
            "SBQQ__Primary__c": True,
            "CurrencyIsoCode": currency.upper(),
            "Legal_Entity__c": fields.string("Legal_Entity__c", max_length=20),
            "SBQQ__PaymentTerms__c": fields.string("SBQQ__PaymentTerms__c") or "Net 30",
            "SBQQ__StartDate__c": start.isoformat(),
            "SBQQ__EndDate__c": (add_months(start, term) - dt.timedelta(days=1)).isoformat(),
            "SBQQ__SubscriptionTerm__c": term,
            "SBQQ__ExpirationDate__c": (
                expiration or (call.now.date() + dt.timedelta(days=30))
            ).isoformat(),
            "ApprovedAt__c": None,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
        }
        lines = [
            self._line_values(call, raw, number, quote)
            for number, raw in enumerate(raw_lines, start=1)
        ]
        quote["SBQQ__NetAmount__c"] = money(
            sum((Decimal(line["SBQQ__NetTotal__c"]) for line in lines), Decimal(0))
        )
        quote["SBQQ__LineItemCount__c"] = len(lines)
        quote["SBQQ__LineItems__r"] = query_result(lines)
        call.collection("quotes")[identifier] = quote
        return Reply(201, quote)

    def quote_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("quotes"), call.params["id"]))

    def quote_list(self, call: Call) -> Reply:
        status = call.arg("status")
        account = call.arg("account")
        since_text = call.arg("modified_since")
        since = sf_parse_datetime(since_text) if since_text else None
        if since_text and since is None:
            raise self.invalid("modified_since", f"modified_since: {since_text!r} is not a date")
        found = [
            quote
            for quote in call.collection("quotes").values()
            if (not status or quote["SBQQ__Status__c"] == status)
            and (not account or quote["SBQQ__Account__c"] == account)
            and (since is None or quote_modified_at(quote) > since)
        ]
        found.sort(key=lambda quote: quote["LastModifiedDate"])
        return Reply(200, query_result(found))

    def quote_approve(self, call: Call) -> Reply:
        quote = self.lookup(call.collection("quotes"), call.params["id"])
        if call.body:
            raise self.unknown_field(next(iter(call.body)))
        if quote["SBQQ__Status__c"] != "Draft":
            raise ApiError(
                400,
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                f"Quote {quote['Name']} is {quote['SBQQ__Status__c']} and cannot be approved.",
                field="SBQQ__Status__c",
            )
        quote["SBQQ__Status__c"] = "Approved"
        quote["ApprovedAt__c"] = sf_datetime(call.now)
        quote["LastModifiedDate"] = sf_datetime(call.now)
        account = call.collection("accounts", system="crm").get(quote["SBQQ__Account__c"])
        call.emit("quote.approved", quote_approved_data(quote, account, call.now))
        return Reply(200, quote)

    def contract_change(self, call: Call) -> Reply:
        """A change of a contract processed in CPQ (``amendments``, ``renewals`` or
        ``cancellations``): recorded with a new id and announced as its canonical event
        (``amendment.processed``, ``renewal.processed``, ``cancellation.processed``). The body
        is the event's ``data`` without the contract and the change's id."""
        kinds = {
            "amendments": ("amendment.processed", "amendment_id", "a0x"),
            "renewals": ("renewal.processed", "renewal_id", "a0r"),
            "cancellations": ("cancellation.processed", "cancellation_id", "a0c"),
        }
        if call.params["change"] not in kinds:
            raise ApiError(404, "NOT_FOUND", f"no contract change {call.params['change']!r}")
        event_type, id_field, prefix = kinds[call.params["change"]]
        change_id = call.salesforce_id(prefix)
        data = {**call.body, "contract_id": call.params["id"], id_field: change_id}
        if event_type != "cancellation.processed":
            data.setdefault("cpq_quote_id", change_id)
        call.collection("contract_changes")[change_id] = {
            "Id": change_id,
            "event_type": event_type,
            "data": data,
        }
        call.emit(event_type, data, correlation_id=call.params["id"])
        return Reply(201, {"Id": change_id, "event_type": event_type, "data": data})

    def contract_change_list(self, call: Call) -> Reply:
        return Reply(200, {"records": list(call.collection("contract_changes").values())})


def quote_modified_at(quote: dict[str, Any]) -> dt.datetime:
    modified = sf_parse_datetime(quote["LastModifiedDate"])
    assert modified is not None
    return modified


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "", {})}


def quote_approved_data(
    quote: dict[str, Any], account: dict[str, Any] | None, approved_at: dt.datetime
) -> dict[str, Any]:
    """The canonical ``quote.approved`` payload for an approved quote."""
    account = account or {}
    country = account.get("BillingCountryCode")
    address = _drop_empty(
        {
            "line1": account.get("BillingStreet"),
            "city": account.get("BillingCity"),
            "postcode": account.get("BillingPostalCode"),
            "region": account.get("BillingState"),
            "country": country,
        }
    )
    lines = []
    for line in quote["SBQQ__LineItems__r"]["records"]:
        lines.append(
            {
                "line_no": line["SBQQ__Number__c"],
                "cpq_line_id": line["Id"],
                "product_code": line["SBQQ__ProductCode__c"],
                "description": line["SBQQ__Description__c"],
                "kind": CHARGE_TYPES[line["SBQQ__ChargeType__c"]],
                "quantity": line["SBQQ__Quantity__c"],
                "unit_price": line["SBQQ__ListPrice__c"],
                "discount_percent": line["SBQQ__Discount__c"],
                "net_unit_price": line["SBQQ__NetPrice__c"],
                "billing_period": FREQUENCIES.get(line["SBQQ__BillingFrequency__c"] or "", ""),
                "term_start": line["SBQQ__StartDate__c"],
                "term_end": line["SBQQ__EndDate__c"],
            }
        )
    return {
        "cpq_quote_id": quote["Id"],
        "quote_number": quote["Name"],
        "approved_at": iso_utc(approved_at),
        "valid_until": quote["SBQQ__ExpirationDate__c"],
        "account": _drop_empty(
            {
                "crm_id": quote["SBQQ__Account__c"],
                "name": account.get("Name"),
                "domain": account.get("Domain__c"),
                "tax_id": account.get("Tax_Id__c"),
                "country": country,
                "currency": account.get("CurrencyIsoCode") or quote["CurrencyIsoCode"],
                "address": address,
            }
        ),
        "legal_entity_code": quote["Legal_Entity__c"] or "",
        "currency": quote["CurrencyIsoCode"],
        "total_amount": quote["SBQQ__NetAmount__c"],
        "lines": lines,
    }
