"""A Stripe-like payments system: payment intents (``pi_``) confirmed, captured or declined.

``payment_method`` names a test card like Stripe's: ``pm_card_visa`` succeeds,
``pm_card_chargeDeclined`` is declined (402 with the intent, which now exists, in the error).
With ``capture_method: automatic`` a confirmed intent succeeds at once; ``manual`` waits in
``requires_capture`` until ``/capture``. Success emits ``payment.received``, referencing the
invoice given as ``invoice`` (a billing invoice id) and/or ``metadata[invoice_number]``.
"""

from __future__ import annotations

from typing import Any

from sandbox.errors import ApiError, render
from sandbox.systems.base import Call, Reply, Route, iso_utc, route
from sandbox.systems.stripe import (
    StripeSystem,
    list_object,
    metadata_matches,
    minor_to_decimal,
)

DECLINING_METHODS = ("pm_card_chargeDeclined", "pm_card_visa_chargeDeclined")
INTENT_FIELDS = (
    "amount",
    "currency",
    "customer",
    "description",
    "metadata",
    "payment_method",
    "confirm",
    "capture_method",
    "invoice",
    "receipt_email",
)
MINIMUM_AMOUNT = 50


class PaymentsSystem(StripeSystem):
    name = "payments"
    collections = ("payment_intents",)

    def routes(self) -> list[Route]:
        return [
            route("GET", "/payment_intents", self.intent_list),
            route("POST", "/payment_intents", self.intent_create),
            route("GET", "/payment_intents/{id}", self.intent_get),
            route("POST", "/payment_intents/{id}/confirm", self.intent_confirm),
            route("POST", "/payment_intents/{id}/capture", self.intent_capture),
            route("POST", "/payment_intents/{id}/cancel", self.intent_cancel),
        ]

    def _intent(self, call: Call) -> dict[str, Any]:
        return self.lookup(call.collection("payment_intents"), "payment_intent", call.params["id"])

    def intent_create(self, call: Call) -> Reply:
        fields = self.check(call.body, INTENT_FIELDS)
        amount = fields.integer("amount", required=True, minimum=1)
        currency = fields.currency("currency", required=True)
        assert amount is not None and currency is not None
        if amount < MINIMUM_AMOUNT:
            raise ApiError(
                400,
                "amount_too_small",
                f"Amount must be at least {MINIMUM_AMOUNT} {currency.lower()} minor units.",
                field="amount",
            )
        capture_method = fields.choice("capture_method", ("automatic", "manual")) or "automatic"
        payment_method = fields.string("payment_method")
        confirm = fields.boolean("confirm")
        if confirm and payment_method is None:
            raise self.missing("payment_method")
        intent_id = call.stripe_id("pi", width=24)
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": capture_method,
            "client_secret": f"{intent_id}_secret_{call.stripe_id('secret', width=25)[7:]}",
            "created": call.unix_now,
            "currency": currency.lower(),
            "customer": fields.string("customer"),
            "description": fields.string("description", max_length=1000),
            "invoice": fields.string("invoice"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": self.metadata(fields),
            "payment_method": payment_method,
            "receipt_email": fields.string("receipt_email"),
            "status": "requires_payment_method"
            if payment_method is None
            else "requires_confirmation",
        }
        call.collection("payment_intents")[intent_id] = intent
        if confirm:
            return self._confirm(call, intent)
        return Reply(200, intent)

    def _confirm(self, call: Call, intent: dict[str, Any]) -> Reply:
        if intent["payment_method"] in DECLINING_METHODS:
            error = ApiError(402, "card_declined", "Your card was declined.")
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "type": "card_error",
            }
            error.extra = {"decline_code": "generic_decline", "payment_intent": intent}
            # The intent exists and changed: this is a reply, not a refusal.
            return Reply(402, render(self.style, error))
        intent["latest_charge"] = call.stripe_id("ch", width=24)
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
        else:
            self._succeed(call, intent, intent["amount"])
        return Reply(200, intent)

    def _succeed(self, call: Call, intent: dict[str, Any], amount: int) -> None:
        intent["status"] = "succeeded"
        intent["amount_received"] = amount
        intent["amount_capturable"] = 0
        call.emit(
            "payment.received",
            payment_received_data(intent, call),
            correlation_id=intent["metadata"].get("tandem_invoice")
            or intent["metadata"].get("tandem_order"),
        )

    def intent_confirm(self, call: Call) -> Reply:
        intent = self._intent(call)
        fields = self.check(call.body, ("payment_method",))
        payment_method = fields.string("payment_method") or intent["payment_method"]
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise self._unexpected_state(intent, "confirm")
        if payment_method is None:
            raise self.missing("payment_method")
        intent["payment_method"] = payment_method
        return self._confirm(call, intent)

    def intent_capture(self, call: Call) -> Reply:
        intent = self._intent(call)
        fields = self.check(call.body, ("amount_to_capture",))
        if intent["status"] != "requires_capture":
            raise self._unexpected_state(intent, "capture")
        amount = fields.integer("amount_to_capture", minimum=1)
        if amount is None:
            amount = intent["amount_capturable"]
        if amount > intent["amount_capturable"]:
            raise self.invalid(
                "amount_to_capture",
                "The amount to capture cannot exceed the amount capturable "
                f"({intent['amount_capturable']}).",
            )
        self._succeed(call, intent, amount)
        return Reply(200, intent)

    def intent_cancel(self, call: Call) -> Reply:
        intent = self._intent(call)
        fields = self.check(call.body, ("cancellation_reason",))
        reason = fields.choice(
            "cancellation_reason", ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
        )
        if intent["status"] in ("succeeded", "canceled"):
            raise self._unexpected_state(intent, "cancel")
        intent["status"] = "canceled"
        intent["cancellation_reason"] = reason
        intent["amount_capturable"] = 0
        return Reply(200, intent)

    def _unexpected_state(self, intent: dict[str, Any], action: str) -> ApiError:
        return ApiError(
            400,
            "payment_intent_unexpected_state",
            f"You cannot {action} this PaymentIntent because it has a status of "
            f"{intent['status']}.",
            extra={"payment_intent": dict(intent)},
        )

    def intent_get(self, call: Call) -> Reply:
        return Reply(200, self._intent(call))

    def intent_list(self, call: Call) -> Reply:
        customer = call.arg("customer")
        invoice = call.arg("invoice")
        wanted = call.metadata_filter()
        found = [
            intent
            for intent in call.collection("payment_intents").values()
            if (customer is None or intent["customer"] == customer)
            and (invoice is None or intent["invoice"] == invoice)
            and metadata_matches(intent, wanted)
        ]
        return Reply(200, list_object("/payments/payment_intents", found))


def payment_received_data(intent: dict[str, Any], call: Call) -> dict[str, Any]:
    """The canonical ``payment.received`` payload for a succeeded payment intent."""
    data: dict[str, Any] = {
        "external_payment_id": intent["id"],
        "amount": minor_to_decimal(intent["amount_received"], intent["currency"]),
        "currency": intent["currency"].upper(),
        "received_at": iso_utc(call.now),
        "method": "card",
    }
    if intent["invoice"]:
        data["external_invoice_id"] = intent["invoice"]
    invoice_number = intent["metadata"].get("invoice_number") or intent["metadata"].get(
        "tandem_invoice"
    )
    if invoice_number:
        data["invoice_number"] = invoice_number
    for key in ("tandem_order", "tandem_contract", "tandem_invoice"):
        if intent["metadata"].get(key):
            data[key.removeprefix("tandem_") + "_id"] = intent["metadata"][key]
    return data
