"""Stripe's webhook events, mapped onto Tandem's canonical events.

When billing is Stripe (``WEBHOOK_SIGNATURE_BILLING=stripe``) its endpoint receives Stripe
``Event`` objects (``{"id": "evt_…", "object": "event", "type": …, "data": {"object": …}}``)
signed with ``Stripe-Signature``. They are stored raw like any delivery; processing turns
each into the canonical envelope that is then validated against its JSON Schema:

- ``customer.subscription.created`` / ``.updated`` with status ``active`` ->
  ``subscription.activated``
- ``invoice.finalized`` -> ``invoice.posted``
- ``invoice.paid`` / ``invoice.payment_succeeded`` -> ``payment.received``
- ``invoice.payment_failed`` -> ``payment.failed``, ``invoice.voided`` -> ``invoice.voided``
- ``charge.refunded`` -> ``payment.refunded`` (its latest refund), ``credit_note.created`` ->
  ``credit_note.issued``
- ``customer.subscription.deleted`` -> ``cancellation.processed`` of its contract, dated the
  day it ended (a cancellation made in Stripe, or by Stripe after failed payments); the one
  Tandem's own cancellation causes is absorbed as already received (see the handler)

Anything else (and a subscription that is not active yet) is unmappable: ``EventRejected``
with the reason, so the raw event stays visible with why nothing happened.
Stripe ids name Tandem's records through the metadata Tandem put on them (``tandem_order``,
``tandem_contract``) or, for invoices, through the crosswalk of their subscription.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from masterdata.models import ExternalId
from orchestration.connectors.billing_common import CONTRACT_KEY, ORDER_KEY
from orchestration.connectors.minor_units import decimal_from_minor_units
from orchestration.connectors.stripe.billing import invoice_subscription_id
from orchestration.events.errors import EventRejected
from q2c.models import Contract

SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated")
INVOICE_POSTED_EVENTS = ("invoice.finalized",)
PAYMENT_EVENTS = ("invoice.paid", "invoice.payment_succeeded")
PAYMENT_FAILED_EVENTS = ("invoice.payment_failed",)


def is_stripe_event(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("object") == "event"


def _timestamp(value: Any) -> str:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _date(value: Any) -> str:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC).date().isoformat()


def _id_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _envelope(event: dict[str, Any], canonical: str, data: dict[str, Any]) -> dict[str, Any]:
    envelope = {
        "event_id": str(event["id"]),
        "event_type": canonical,
        "schema_version": 1,
        "occurred_at": _timestamp(event.get("created") or 0),
        "data": data,
    }
    reference = data.get("order_id") or data.get("contract_id")
    if reference:
        envelope["correlation_id"] = str(reference).split(":", 1)[0]
    return envelope


def _reference(value: Any) -> str | None:
    """An id to look up: a non-empty string without NUL (which no stored id contains and
    PostgreSQL refuses in a query), else None."""
    return value if isinstance(value, str) and value and "\x00" not in value else None


def _references(subscription_id: str, metadata: dict[str, Any]) -> tuple[str | None, str | None]:
    """(order id, contract id) of a subscription: its metadata, else Tandem's crosswalk."""
    order_id = _reference(metadata.get(ORDER_KEY))
    contract_id = _reference(metadata.get(CONTRACT_KEY))
    subscription_id = _reference(subscription_id) or ""
    if contract_id is None and subscription_id:
        link = ExternalId.objects.filter(
            system="billing", object_type="subscription", external_id=subscription_id
        ).first()
        contract_id = link.enterprise_id if link is not None else None
    if order_id is None and contract_id is not None:
        contract = Contract.objects.select_related("order").filter(enterprise_id=contract_id)
        found = contract.first()
        if found is not None and found.order is not None:
            order_id = found.order.enterprise_id
    return order_id, contract_id


def _subscription_activated(event: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    if sub.get("status") != "active":
        raise EventRejected(
            f"subscription {sub.get('id')} is {sub.get('status')!r}, not active: nothing to map"
        )
    order_id, contract_id = _references(str(sub["id"]), sub.get("metadata") or {})
    if contract_id is None:
        raise EventRejected(f"subscription {sub['id']} names no Tandem contract")
    items = (sub.get("items") or {}).get("data") or [{}]
    start = sub.get("current_period_start") or items[0].get("current_period_start")
    end = sub.get("current_period_end") or items[0].get("current_period_end")
    if start is None or end is None:
        raise EventRejected(f"subscription {sub['id']} has no current period")
    data: dict[str, Any] = {
        "contract_id": contract_id,
        "billing_subscription_id": str(sub["id"]),
        "billing_customer_id": _id_of(sub.get("customer")),
        "activated_at": _timestamp(sub.get("start_date") or event.get("created") or 0),
        "current_period_start": _date(start),
        "current_period_end": _date(end),
    }
    if order_id:
        data["order_id"] = order_id
    return _envelope(event, "subscription.activated", data)


def _invoice_metadata(invoice: dict[str, Any]) -> dict[str, Any]:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or invoice.get("subscription_details") or {}
    return dict(details.get("metadata") or {})


def _invoice_posted(event: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    currency = str(invoice["currency"])

    def money(value: Any) -> str:
        return str(decimal_from_minor_units(int(value or 0), currency))

    order_id, contract_id = _references(
        invoice_subscription_id(invoice), _invoice_metadata(invoice)
    )
    lines = []
    for line in (invoice.get("lines") or {}).get("data", []):
        quantity = int(line.get("quantity") or 1)
        amount = int(line.get("amount") or 0)
        lines.append(
            {
                "description": line.get("description") or "subscription",
                "quantity": str(quantity),
                "unit_price": _unit_price(money(amount), quantity),
                "amount": money(amount),
            }
        )
    if not lines:
        raise EventRejected(f"invoice {invoice['id']} has no lines")
    transitions = invoice.get("status_transitions") or {}
    issued = transitions.get("finalized_at") or invoice.get("created") or event.get("created")
    tax = invoice.get("tax")
    if tax is None:
        tax = sum(int(t.get("amount") or 0) for t in invoice.get("total_taxes") or [])
    data = {
        "external_invoice_id": str(invoice["id"]),
        "invoice_number": str(invoice.get("number") or invoice["id"]),
        "order_id": order_id,
        "contract_id": contract_id,
        "currency": currency.upper(),
        "total_amount": money(invoice.get("total")),
        "tax_amount": money(tax),
        "issue_date": _date(issued),
        "due_date": _date(invoice["due_date"]) if invoice.get("due_date") else None,
        "lines": lines,
    }
    return _envelope(event, "invoice.posted", data)


def _unit_price(amount: str, quantity: int) -> str:
    """The unit price of a line: exact in the currency's places when it divides evenly."""
    total = Decimal(amount)
    unit = total / quantity
    exact = unit.quantize(Decimal(1).scaleb(int(total.as_tuple().exponent)))
    return str(exact if exact * quantity == total else unit.quantize(Decimal("0.000001")))


def _payment_received(event: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    currency = str(invoice["currency"])
    transitions = invoice.get("status_transitions") or {}
    paid_at = transitions.get("paid_at") or event.get("created")
    payment_id = _id_of(invoice.get("charge") or invoice.get("payment_intent"))
    data = {
        # One payment per paid invoice when the API version names no charge.
        "external_payment_id": payment_id or f"{invoice['id']}:paid",
        "external_invoice_id": str(invoice["id"]),
        "amount": str(decimal_from_minor_units(int(invoice.get("amount_paid") or 0), currency)),
        "currency": currency.upper(),
        "received_at": _timestamp(paid_at or 0),
        "method": "card" if invoice.get("collection_method") != "send_invoice" else "other",
    }
    if invoice.get("number"):
        data["invoice_number"] = str(invoice["number"])
    return _envelope(event, "payment.received", data)


def _money(amount: Any, currency: str) -> str:
    return str(decimal_from_minor_units(int(amount or 0), currency))


def _payment_failed(event: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    currency = str(invoice["currency"])
    # The reason is on the charge, when the event carries it expanded.
    charge = invoice.get("charge")
    reason = charge.get("failure_message") if isinstance(charge, dict) else None
    attempt = _id_of(charge or invoice.get("payment_intent"))
    data = {
        # One failed attempt per invoice and attempt count when Stripe names no charge.
        "external_payment_id": attempt or f"{invoice['id']}:attempt-{invoice.get('attempt_count')}",
        "external_invoice_id": str(invoice["id"]),
        "amount": _money(invoice.get("amount_due"), currency),
        "currency": currency.upper(),
        "failed_at": _timestamp(event.get("created") or 0),
        "failure_reason": str(
            reason or f"payment attempt {invoice.get('attempt_count') or 1} failed"
        )[:2000],
        "method": "card" if invoice.get("collection_method") != "send_invoice" else "other",
    }
    return _envelope(event, "payment.failed", data)


def _invoice_voided(event: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    transitions = invoice.get("status_transitions") or {}
    data: dict[str, Any] = {
        "external_invoice_id": str(invoice["id"]),
        "voided_at": _timestamp(transitions.get("voided_at") or event.get("created") or 0),
    }
    if invoice.get("number"):
        data["invoice_number"] = str(invoice["number"])
    return _envelope(event, "invoice.voided", data)


def _charge_refunded(event: dict[str, Any], charge: dict[str, Any]) -> dict[str, Any]:
    """The charge's latest refund (Stripe sends the charge with its refunds, newest first)."""
    refunds = (charge.get("refunds") or {}).get("data") or []
    if not refunds:
        raise EventRejected(f"charge {charge.get('id')} carries no refund")
    refund = refunds[0]
    currency = str(refund.get("currency") or charge["currency"])
    data: dict[str, Any] = {
        "external_refund_id": str(refund["id"]),
        "external_payment_id": str(charge["id"]),
        "amount": _money(refund.get("amount"), currency),
        "currency": currency.upper(),
        "refunded_at": _timestamp(refund.get("created") or event.get("created") or 0),
        "reason": str(refund.get("reason") or ""),
    }
    if charge.get("invoice"):
        data["external_invoice_id"] = _id_of(charge["invoice"])
    return _envelope(event, "payment.refunded", data)


def _credit_note_issued(event: dict[str, Any], note: dict[str, Any]) -> dict[str, Any]:
    currency = str(note["currency"])
    data = {
        "external_credit_note_id": str(note["id"]),
        "credit_note_number": str(note.get("number") or note["id"]),
        "external_invoice_id": _id_of(note.get("invoice")),
        "amount": _money(note.get("amount"), currency),
        "currency": currency.upper(),
        "issued_at": _timestamp(note.get("created") or event.get("created") or 0),
        "reason": str(note.get("memo") or note.get("reason") or ""),
    }
    return _envelope(event, "credit_note.issued", data)


def _subscription_deleted(event: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    """A subscription that ended in Stripe: the cancellation of its contract, once per
    subscription (its id is the cancellation's id)."""
    if sub.get("status") != "canceled":
        raise EventRejected(
            f"subscription {sub.get('id')} is {sub.get('status')!r}, not canceled: nothing to map"
        )
    _, contract_id = _references(str(sub["id"]), sub.get("metadata") or {})
    if contract_id is None:
        raise EventRejected(f"subscription {sub['id']} names no Tandem contract")
    ended = sub.get("ended_at") or sub.get("canceled_at") or event.get("created") or 0
    details = sub.get("cancellation_details") or {}
    why = " — ".join(str(part) for part in (details.get("reason"), details.get("comment")) if part)
    data: dict[str, Any] = {
        "contract_id": contract_id,
        "cancellation_id": str(sub["id"]),
        "effective_date": _date(ended),
        "reason": f"subscription {sub['id']} ended in Stripe" + (f": {why}" if why else ""),
    }
    return _envelope(event, "cancellation.processed", data)


# What reading a Stripe object of the wrong shape raises: a field missing (KeyError), of the
# wrong type (TypeError, AttributeError), not a number or an impossible one (ValueError,
# OverflowError, decimal's InvalidOperation, a ValueError), an empty list (IndexError).
MALFORMED = (
    KeyError, TypeError, AttributeError, ValueError, OverflowError, IndexError, InvalidOperation,
)  # fmt: skip


def stripe_event_canonical(payload: dict[str, Any]) -> dict[str, Any]:
    """The canonical envelope for a Stripe event, or ``EventRejected`` with the reason (an
    object of the wrong shape included: the reason names the error, never a value)."""
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise EventRejected(f"Stripe event {str(payload.get('id'))[:100]} carries no object")
    try:
        return _mapped(payload, obj)
    except MALFORMED as exc:
        field = f" {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else ""
        raise EventRejected(
            f"Stripe event {str(payload.get('id'))[:100]}: malformed "
            f"{str(payload.get('type'))[:100]} object ({type(exc).__name__}{field})"
        ) from exc


def _mapped(payload: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    event_type = str(payload.get("type") or "")
    if event_type in SUBSCRIPTION_EVENTS:
        return _subscription_activated(payload, obj)
    if event_type in INVOICE_POSTED_EVENTS:
        return _invoice_posted(payload, obj)
    if event_type in PAYMENT_EVENTS:
        return _payment_received(payload, obj)
    if event_type in PAYMENT_FAILED_EVENTS:
        return _payment_failed(payload, obj)
    if event_type == "invoice.voided":
        return _invoice_voided(payload, obj)
    if event_type == "charge.refunded":
        return _charge_refunded(payload, obj)
    if event_type == "credit_note.created":
        return _credit_note_issued(payload, obj)
    if event_type == "customer.subscription.deleted":
        return _subscription_deleted(payload, obj)
    raise EventRejected(f"Stripe event type {event_type!r} has no canonical counterpart")
