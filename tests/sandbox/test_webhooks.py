from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

from jsonschema import Draft202012Validator

from sandbox.config import default_webhook_secret
from tests.sandbox.helpers import (
    billing_customer,
    billing_price,
    cpq_quote,
    crm_account,
    erp_customer,
    erp_order,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "orchestration" / "events" / "schemas"
PAYMENT = {"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


def _verify(delivery, system: str) -> None:
    parts = dict(item.split("=", 1) for item in delivery.headers["X-Tandem-Signature"].split(","))
    expected = hmac.new(
        default_webhook_secret(system).encode(),
        parts["t"].encode() + b"." + delivery.body,
        hashlib.sha256,
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)


def _outbox(sandbox, **filters):
    return sandbox.control("GET", "/webhooks" + _query(filters)).json()["events"]


def _query(filters) -> str:
    return ("?" + "&".join(f"{k}={v}" for k, v in filters.items())) if filters else ""


def test_delivery_is_signed_with_the_systems_secret(sandbox, receiver):
    # given
    quote = cpq_quote(sandbox, crm_account(sandbox))

    # when
    sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")

    # then
    [delivery] = receiver.wait_for(1)
    _verify(delivery, "cpq")
    signed_at = int(delivery.headers["X-Tandem-Signature"].split(",")[0].removeprefix("t="))
    assert abs(signed_at - time.time()) <= 300
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Tandem-Event-Id"] == delivery.payload["event_id"]
    assert delivery.headers["X-Tandem-Event-Type"] == "quote.approved"
    assert delivery.headers["X-Tandem-Delivery-Attempt"] == "1"
    assert delivery.payload["schema_version"] == 1
    assert delivery.payload["event_id"].startswith("evt_")


def test_every_event_matches_its_canonical_schema(sandbox, receiver):
    # given
    quote = cpq_quote(sandbox, crm_account(sandbox))
    erp_customer(sandbox)
    erp_order(sandbox)
    customer = billing_customer(sandbox)
    price = billing_price(sandbox, lookup_key="PLAT-PRO")

    # when
    sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")
    sandbox.control("POST", "/erp/approve/5001")
    sandbox.post("erp", "/invoices", {"externalId": "INV-000001", "createdFrom": {"id": "5001"}})
    sandbox.post(
        "billing",
        "/subscriptions",
        {
            "customer": customer["id"],
            "items": [{"price": price["id"], "quantity": 25}],
            "metadata": {"tandem_order": "ORD-000001", "tandem_contract": "CTR-000001"},
        },
    )
    sandbox.post("payments", "/payment_intents", {**PAYMENT, "invoice": "in_x"})

    # then
    deliveries = receiver.wait_for(6)
    seen = [(d.path, d.payload["event_type"]) for d in deliveries]
    assert sorted(seen) == sorted(
        [
            ("/webhooks/cpq/", "quote.approved"),
            ("/webhooks/erp/", "order.accepted"),
            ("/webhooks/erp/", "invoice.posted"),
            ("/webhooks/billing/", "subscription.activated"),
            ("/webhooks/billing/", "invoice.posted"),
            ("/webhooks/payments/", "payment.received"),
        ]
    )
    for delivery in deliveries:
        _verify(delivery, delivery.path.split("/")[2])
        schema = json.loads((SCHEMAS / delivery.payload["event_type"] / "v1.json").read_text())
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(delivery.payload)]
        assert errors == [], delivery.payload


def test_failed_deliveries_are_retried_until_accepted(sandbox, receiver):
    # given
    receiver.statuses.extend([500, 503])

    # when
    sandbox.post("payments", "/payment_intents", {**PAYMENT, "invoice": "in_1"})

    # then
    deliveries = receiver.wait_for(3)
    assert len({d.payload["event_id"] for d in deliveries}) == 1
    assert [d.headers["X-Tandem-Delivery-Attempt"] for d in deliveries] == ["1", "2", "3"]
    assert [d.body for d in deliveries] == [deliveries[0].body] * 3
    [event] = _outbox(sandbox)
    assert _wait_status(sandbox, event["event_id"], "delivered")["deliveries"] == 1


def _wait_status(sandbox, event_id: str, status: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        [event] = [e for e in _outbox(sandbox) if e["event_id"] == event_id]
        if event["status"] == status or time.monotonic() > deadline:
            assert event["status"] == status
            return event
        time.sleep(0.02)


def test_duplicate_rate_delivers_the_same_event_twice(sandbox, receiver):
    # given
    sandbox.control("POST", "/faults/payments", {"duplicate_webhook_rate": 1})

    # when
    sandbox.post("payments", "/payment_intents", {**PAYMENT, "invoice": "in_1"})

    # then
    first, second = receiver.wait_for(2)
    assert first.payload["event_id"] == second.payload["event_id"]
    assert first.body == second.body
    _verify(first, "payments")
    _verify(second, "payments")
    [event] = _outbox(sandbox)
    assert event["duplicate"] is True


def test_reordering_delivers_a_batch_newest_first(sandbox, receiver):
    # given
    sandbox.control(
        "POST", "/faults/payments", {"reorder_webhooks": True, "reorder_window_ms": 300}
    )

    # when
    for number in range(3):
        sandbox.post("payments", "/payment_intents", {**PAYMENT, "invoice": f"in_{number}"})

    # then
    deliveries = receiver.wait_for(3)
    created_order = [event["event_id"] for event in _outbox(sandbox)]
    assert [d.payload["event_id"] for d in deliveries] == list(reversed(created_order))
    assert [d.payload["data"]["external_invoice_id"] for d in deliveries] == [
        "in_2",
        "in_1",
        "in_0",
    ]


def test_events_are_held_without_a_webhook_url_and_sent_once_it_is_set(sandbox, receiver):
    # given
    sandbox.control("POST", "/settings", {"webhook_url": None})
    sandbox.post("payments", "/payment_intents", {**PAYMENT, "invoice": "in_1"})
    [event] = _outbox(sandbox)
    _wait_status(sandbox, event["event_id"], "held")

    # when
    settings = sandbox.control("POST", "/settings", {"webhook_url": receiver.url})

    # then
    assert settings.json()["webhook_url"] == receiver.url
    [delivery] = receiver.wait_for(1)
    assert delivery.payload["event_id"] == event["event_id"]


def test_redeliver_sends_an_event_again(sandbox, receiver):
    # given
    sandbox.post("payments", "/payment_intents", {**PAYMENT, "invoice": "in_1"})
    [first] = receiver.wait_for(1)

    # when
    response = sandbox.control("POST", f"/webhooks/{first.payload['event_id']}/redeliver")

    # then
    assert response.status_code == 202
    _, second = receiver.wait_for(2)
    assert second.body == first.body
