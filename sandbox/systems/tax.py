"""An Avalara-AvaTax-like tax engine: transactions with tax per line, address resolution.

The rate is by country of the ship-to address (a table below; a country without nexus is
taxed at 0). An exemption number or entity use code makes the document exempt. Address
resolution checks the postal code against the country's format; an all-zero postal code
(``00000``, ``000 00``) is the known-bad pattern and is always refused. Transactions of type
``SalesInvoice`` are stored by their ``code`` and can be read back; ``SalesOrder`` is an
estimate and is not stored. Amounts are decimal strings.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.errors import AVALARA, ApiError
from sandbox.systems.base import (
    CENT,
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

RATES: dict[str, tuple[Decimal, str]] = {
    "US": (Decimal("0.0725"), "Sales Tax"),
    "CA": (Decimal("0.05"), "GST"),
    "GB": (Decimal("0.20"), "VAT"),
    "IE": (Decimal("0.23"), "VAT"),
    "DE": (Decimal("0.19"), "VAT"),
    "FR": (Decimal("0.20"), "VAT"),
    "NL": (Decimal("0.21"), "VAT"),
    "ES": (Decimal("0.21"), "VAT"),
    "IT": (Decimal("0.22"), "VAT"),
    "SE": (Decimal("0.25"), "VAT"),
    "CH": (Decimal("0.081"), "VAT"),
    "AU": (Decimal("0.10"), "GST"),
    "JP": (Decimal("0.10"), "Consumption Tax"),
    "SG": (Decimal("0.09"), "GST"),
}
POSTAL_FORMATS = {
    "US": r"\d{5}(-\d{4})?",
    "CA": r"[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d",
    "GB": r"[A-Za-z]{1,2}\d[A-Za-z\d]? ?\d[A-Za-z]{2}",
    "DE": r"\d{5}",
    "FR": r"\d{5}",
    "ES": r"\d{5}",
    "IT": r"\d{5}",
    "NL": r"\d{4} ?[A-Za-z]{2}",
    "AU": r"\d{4}",
    "JP": r"\d{3}-?\d{4}",
    "SE": r"\d{3} ?\d{2}",
    "CH": r"\d{4}",
}
ADDRESS_FIELDS = ("line1", "line2", "line3", "city", "region", "country", "postalCode")
TRANSACTION_FIELDS = (
    "companyCode",
    "type",
    "code",
    "date",
    "customerCode",
    "currencyCode",
    "addresses",
    "lines",
    "commit",
    "exemptionNo",
    "entityUseCode",
    "purchaseOrderNo",
    "description",
)
LINE_FIELDS = ("number", "quantity", "amount", "itemCode", "taxCode", "description")
TYPES = ("SalesOrder", "SalesInvoice", "ReturnInvoice")


def _address_error(message: str, field: str, number: int) -> ApiError:
    return ApiError(
        400,
        "InvalidAddress",
        message,
        field=field,
        extra={"number": number, "description": "The address could not be validated."},
    )


def _jurisdiction(country: str, *, exempt: bool) -> tuple[Decimal, dict[str, str]]:
    """The rate of ``country`` (0 when ``exempt`` or without nexus), and how lines name it."""
    rate, tax_name = RATES.get(country, (Decimal(0), "No tax"))
    if exempt:
        rate = Decimal(0)
    return rate, {
        "country": country,
        "taxName": tax_name,
        "rate": decimal_text(rate) if rate else "0",
    }


class TaxSystem(System):
    name = "tax"
    style = AVALARA
    collections = ("transactions",)

    def routes(self) -> list[Route]:
        return [
            route("POST", "/transactions/create", self.transaction_create),
            route("GET", "/companies/{company}/transactions/{code}", self.transaction_get),
            route("POST", "/addresses/resolve", self.address_resolve),
        ]

    def missing(self, name: str) -> ApiError:
        return ApiError(
            400,
            "ValueRequiredError",
            f"Field '{name}' is required.",
            field=name,
            extra={"number": 5},
        )

    def invalid(self, name: str, message: str) -> ApiError:
        return ApiError(400, "InvalidFieldValue", message, field=name, extra={"number": 7})

    def unknown_field(self, name: str) -> ApiError:
        return ApiError(
            400,
            "UnknownField",
            f"The field '{name}' is not recognized.",
            field=name,
            extra={"number": 12},
        )

    def not_found(self, kind: str, identifier: str) -> ApiError:
        return ApiError(
            404, "EntityNotFoundError", f"{kind} '{identifier}' not found.", extra={"number": 4}
        )

    def _address(self, fields: Fields, raw: Any, prefix: str) -> dict[str, Any]:
        nested = fields.nested(raw, prefix, ADDRESS_FIELDS)
        address = {name: nested.string(name) for name in ADDRESS_FIELDS}
        country = (address["country"] or "").upper()
        if not country:
            raise self.missing(f"{prefix}country")
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise _address_error(
                f"Country '{address['country']}' is not a valid ISO 3166 country code.",
                f"{prefix}country",
                310,
            )
        address["country"] = country
        postal = (address["postalCode"] or "").strip()
        if not postal:
            raise _address_error(
                "The address value was incomplete: postalCode is missing.",
                f"{prefix}postalCode",
                309,
            )
        if re.fullmatch(r"[0\s-]+", postal):
            raise _address_error(
                f"The postal code '{postal}' is not valid.", f"{prefix}postalCode", 309
            )
        pattern = POSTAL_FORMATS.get(country)
        if pattern and not re.fullmatch(pattern, postal):
            raise _address_error(
                f"The postal code '{postal}' is not valid for country {country}.",
                f"{prefix}postalCode",
                309,
            )
        address["postalCode"] = postal.upper()
        return address

    def address_resolve(self, call: Call) -> Reply:
        fields = Fields(self, call.body)
        if "address" in call.body:
            self.check(call.body, ("address", "textCase"))
            raw = call.body["address"]
            prefix = "address."
        else:
            self.check(call.body, (*ADDRESS_FIELDS, "textCase"))
            raw, prefix = call.body, ""
        address = self._address(fields, raw, prefix)
        validated = {
            **{key: value or "" for key, value in address.items()},
            "addressType": "StreetOrResidentialAddress",
            "city": (address["city"] or "").upper(),
            "line1": (address["line1"] or "").upper(),
        }
        rate, _ = RATES.get(address["country"], (Decimal(0), "No tax"))
        return Reply(
            200,
            {
                "address": {key: value for key, value in address.items() if value},
                "validatedAddresses": [validated],
                "resolutionQuality": "Street" if address["line1"] else "PostalCentroidGood",
                "taxAuthorities": [
                    {
                        "avalaraId": f"{address['country']}-1",
                        "jurisdictionName": address["country"],
                        "jurisdictionType": "Country",
                        "signatureCode": "",
                    }
                ]
                if rate
                else [],
                "messages": [],
            },
        )

    def transaction_create(self, call: Call) -> Reply:
        """Tax a document by its ship-to country; an invoice is kept by code until committed."""
        fields = self.check(call.body, TRANSACTION_FIELDS)
        company = fields.string("companyCode", required=True, max_length=25)
        kind = fields.choice("type", TYPES) or "SalesOrder"
        date = fields.date("date", required=True)
        customer = fields.string("customerCode", required=True, max_length=50)
        currency = (fields.currency("currencyCode") or "USD").upper()
        code = fields.string("code", max_length=50)
        commit = fields.boolean("commit")
        exemption = fields.string("exemptionNo") or fields.string("entityUseCode")
        ship_to = self._ship_to(fields)
        assert date is not None
        rate, jurisdiction = _jurisdiction(ship_to["country"], exempt=bool(exemption))
        existing = self._uncommitted(call, company, code)
        lines = [
            self._tax_line(raw_line, index, fields, ship_to=ship_to, rate=rate,
                           jurisdiction=jurisdiction, exempt=bool(exemption))
            for index, raw_line in enumerate(fields.items("lines", required=True, maximum=1000))
        ]  # fmt: skip
        total_amount = sum((Decimal(line["lineAmount"]) for line in lines), Decimal(0))
        total_tax = sum((Decimal(line["tax"]) for line in lines), Decimal(0))
        final_code = code or f"{call.number('anonymous_code'):08d}"
        status = "Temporary" if kind == "SalesOrder" else ("Committed" if commit else "Saved")
        transaction = {
            "id": existing["id"] if existing else 2_000_000_000 + call.number("transaction"),
            "code": final_code,
            "companyCode": company,
            "type": kind,
            "date": date.isoformat(),
            "status": status,
            "customerCode": customer,
            "currencyCode": currency,
            "exemptNo": exemption,
            "purchaseOrderNo": fields.string("purchaseOrderNo"),
            "description": fields.string("description", max_length=2048),
            "totalAmount": money(total_amount),
            "totalExempt": money(total_amount) if exemption else "0.00",
            "totalTaxable": "0.00" if exemption else money(total_amount),
            "totalTax": money(total_tax),
            "totalTaxCalculated": money(total_tax),
            "lines": lines,
            "addresses": [{"boundaryLevel": "Zip5", **ship_to}],
            "summary": [
                {
                    "country": jurisdiction["country"],
                    "jurisType": "Country",
                    "jurisName": ship_to["country"],
                    "taxName": jurisdiction["taxName"],
                    "rate": jurisdiction["rate"],
                    "taxable": "0.00" if exemption else money(total_amount),
                    "tax": money(total_tax),
                }
            ],
            "modifiedDate": iso_utc(call.now),
        }
        if kind != "SalesOrder":
            transactions = call.collection("transactions")
            transactions[f"{company}/{final_code}"] = transaction
        return Reply(201, transaction)

    def _ship_to(self, fields: Fields) -> dict[str, Any]:
        """The validated ship-to address (``shipTo``, else ``singleLocation``)."""
        raw_addresses = fields.mapping("addresses", required=True)
        assert raw_addresses is not None
        addresses_fields = fields.nested(
            raw_addresses, "addresses.", ("singleLocation", "shipFrom", "shipTo")
        )
        target = raw_addresses.get("shipTo") or raw_addresses.get("singleLocation")
        if target is None:
            raise self.missing("addresses.shipTo")
        key = "shipTo" if "shipTo" in raw_addresses else "singleLocation"
        return self._address(addresses_fields, target, f"addresses.{key}.")

    def _uncommitted(
        self, call: Call, company: str | None, code: str | None
    ) -> dict[str, Any] | None:
        """The stored transaction with ``code``, if any; a committed one is refused."""
        transactions = call.collection("transactions")
        stored_key = f"{company}/{code}" if code else None
        existing = transactions.get(stored_key) if stored_key else None
        if existing is not None and existing["status"] == "Committed":
            raise ApiError(
                400,
                "TransactionAlreadyCommitted",
                f"Transaction '{code}' for company '{company}' is already committed.",
                field="code",
                extra={"number": 1301},
            )
        return existing

    def _tax_line(
        self,
        raw_line: Any,
        index: int,
        fields: Fields,
        *,
        ship_to: dict[str, Any],
        rate: Decimal,
        jurisdiction: dict[str, str],
        exempt: bool,
    ) -> dict[str, Any]:
        """One taxed line: its amount at ``rate`` (nothing taxable when ``exempt``)."""
        line = fields.nested(raw_line, f"lines[{index}].", LINE_FIELDS)
        amount = line.decimal("amount", required=True)
        quantity = line.decimal("quantity") or Decimal(1)
        assert amount is not None
        tax = (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP)
        return {
            "lineNumber": line.string("number") or str(index + 1),
            "itemCode": line.string("itemCode") or "",
            "taxCode": line.string("taxCode") or "P0000000",
            "description": line.string("description") or "",
            "quantity": decimal_text(quantity),
            "lineAmount": money(amount),
            "taxableAmount": money(amount) if not exempt else "0.00",
            "exemptAmount": money(amount) if exempt else "0.00",
            "tax": money(tax),
            "details": [
                {
                    "country": jurisdiction["country"],
                    "region": ship_to["region"] or "",
                    "jurisdictionType": "Country",
                    "jurisdictionName": ship_to["country"],
                    "taxName": jurisdiction["taxName"],
                    "rate": jurisdiction["rate"],
                    "taxableAmount": money(amount) if not exempt else "0.00",
                    "tax": money(tax),
                }
            ],
        }

    def transaction_get(self, call: Call) -> Reply:
        key = f"{call.params['company']}/{call.params['code']}"
        transaction = call.collection("transactions").get(key)
        if transaction is None:
            raise self.not_found("Transaction", call.params["code"])
        return Reply(200, transaction)
