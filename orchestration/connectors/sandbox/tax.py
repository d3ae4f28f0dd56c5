"""``TaxApi`` for the sandbox's Avalara-AvaTax-like tax engine.

``tax_quote`` asks for an estimate (a ``SalesOrder`` transaction, which the engine computes
but never stores), so asking twice changes nothing. The engine needs a ship-to postal code
as well as the country, hence ``tax_quote``'s optional ``postcode``; without it the engine's
refusal (``PermanentError``) says so. Amounts go out as decimal strings, never floats.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from orchestration.connectors.interfaces import RemoteLine, RemoteRecord, TaxApi
from orchestration.connectors.transport import Transport

SYSTEM = "tax"
DEFAULT_COMPANY_CODE = "DEFAULT"


class SandboxTax:
    def __init__(
        self, transport: Transport | None = None, *, company_code: str = DEFAULT_COMPANY_CODE
    ) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)
        self.company_code = company_code

    def address_validate(
        self, *, line1: str, city: str, postcode: str, country: str, correlation_id: str
    ) -> RemoteRecord:
        """The address as the engine resolved it; an invalid one raises ``PermanentError``.

        The engine gives a resolved address no id: ``id`` is ``country:postcode``.
        ``status`` is the resolution quality (``Street``, ``PostalCentroidGood``, …).
        """
        response = self.transport.call(
            operation="address_validate",
            method="POST",
            path="addresses/resolve",
            json={"line1": line1, "city": city, "postalCode": postcode, "country": country},
            correlation_id=correlation_id,
        )
        body = response.body
        resolved: dict[str, Any] = (body.get("validatedAddresses") or [{}])[0]
        return RemoteRecord(
            id=f"{resolved.get('country', '')}:{resolved.get('postalCode', '')}",
            status=str(body.get("resolutionQuality") or ""),
            data={
                "line1": resolved.get("line1") or "",
                "city": resolved.get("city") or "",
                "postcode": resolved.get("postalCode") or "",
                "region": resolved.get("region") or "",
                "country": resolved.get("country") or "",
                "jurisdictions": [
                    str(authority.get("jurisdictionName"))
                    for authority in body.get("taxAuthorities") or []
                ],
            },
        )

    def tax_quote(
        self,
        *,
        reference: str,
        country: str,
        currency: str,
        lines: list[RemoteLine],
        date: dt.date,
        postcode: str = "",
    ) -> Decimal:
        """The total tax the engine computes for ``lines`` shipped to ``country``."""
        response = self.transport.call(
            operation="tax_quote",
            method="POST",
            path="transactions/create",
            json={
                "companyCode": self.company_code,
                "type": "SalesOrder",
                "customerCode": reference,
                "date": date.isoformat(),
                "currencyCode": currency.upper(),
                "addresses": {"shipTo": {"country": country.upper(), "postalCode": postcode}},
                "lines": [
                    {
                        "number": str(number),
                        "quantity": format(line.quantity, "f"),
                        "amount": format(line.quantity * line.unit_price, "f"),
                        "itemCode": line.product_ref,
                        "description": line.description,
                    }
                    for number, line in enumerate(lines, start=1)
                ],
            },
        )
        return Decimal(str(response.body["totalTax"]))


def _implements(connector: SandboxTax) -> TaxApi:
    return connector  # mypy checks that SandboxTax satisfies TaxApi
