"""``PaymentsApi`` for the sandbox's Stripe-like payments system (payment intents).

A collection is one payment intent, confirmed at once with the configured payment method,
carrying the Tandem invoice reference in ``metadata[tandem_invoice]``; ``payment_find``
searches by it. A declined card is a ``PermanentError`` (status 402) with the processor's
message. Amounts go out as integer minor units, never through a float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orchestration.connectors.interfaces import PaymentsApi, RemoteRecord
from orchestration.connectors.minor_units import decimal_from_minor_units, minor_units_from
from orchestration.connectors.transport import Transport

SYSTEM = "payments"
INVOICE_KEY = "tandem_invoice"
DEFAULT_PAYMENT_METHOD = "pm_card_visa"


class SandboxPayments:
    def __init__(
        self, transport: Transport | None = None, *, payment_method: str = DEFAULT_PAYMENT_METHOD
    ) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)
        self.payment_method = payment_method

    def payment_find(self, *, invoice_ref: str) -> RemoteRecord | None:
        """The payment for ``invoice_ref``: a succeeded one if any, else the latest attempt."""
        response = self.transport.call(
            operation="payment_find",
            method="GET",
            path="payment_intents",
            params={f"metadata[{INVOICE_KEY}]": invoice_ref},
        )
        intents = response.body["data"]  # newest first
        succeeded = [intent for intent in intents if intent["status"] == "succeeded"]
        chosen = (succeeded or intents or [None])[0]
        return payment_record(chosen) if chosen is not None else None

    def payment_collect(
        self, *, invoice_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RemoteRecord:
        """Create and confirm a payment intent for ``invoice_ref`` with the configured payment
        method (``PaymentsApi.payment_collect``); a decline is ``PermanentError`` (402).
        """
        response = self.transport.call(
            operation="payment_collect",
            method="POST",
            path="payment_intents",
            json={
                "amount": minor_units_from(amount, currency, system=SYSTEM),
                "currency": currency.lower(),
                "confirm": True,
                "payment_method": self.payment_method,
                "description": f"Invoice {invoice_ref}",
                "metadata": {INVOICE_KEY: invoice_ref},
            },
            idempotency_key=idempotency_key,
        )
        return payment_record(response.body)


def payment_record(body: dict[str, Any]) -> RemoteRecord:
    """A payment intent as a ``RemoteRecord`` (amounts as Decimal strings)."""
    currency = str(body["currency"])
    return RemoteRecord(
        id=str(body["id"]),
        status=str(body["status"]),
        data={
            "invoice_ref": (body.get("metadata") or {}).get(INVOICE_KEY, ""),
            "amount": str(decimal_from_minor_units(body["amount"], currency)),
            "amount_received": str(decimal_from_minor_units(body["amount_received"], currency)),
            "currency": currency.upper(),
            "charge_id": body.get("latest_charge") or "",
        },
    )


def _implements(connector: SandboxPayments) -> PaymentsApi:
    return connector  # mypy checks that SandboxPayments satisfies PaymentsApi
