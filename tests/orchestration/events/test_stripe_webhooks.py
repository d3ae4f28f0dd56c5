"""Stripe-signed webhooks on the billing endpoint, and their mapping onto canonical events."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from masterdata.services import records as md
from orchestration.events.catalog import event_validate
from orchestration.events.errors import EventRejected
from orchestration.events.services import inbound_event_process
from orchestration.events.signatures import signature_header
from orchestration.events.stripe_events import stripe_event_canonical
from orchestration.models import InboundEvent
from orchestration.workflows.models import WorkflowRun
from q2c import lifecycle, services
from tests import factories

URL = "/webhooks/billing/"
SECRET = "whsec_current_billing"
PREVIOUS = "whsec_previous_billing"
NOW = 1_790_000_000


@pytest.fixture
def stripe_billing(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.WEBHOOK_SIGNATURE_BILLING = "stripe"
    monkeypatch.setenv("WEBHOOK_SECRET_BILLING", SECRET)
    monkeypatch.setenv("WEBHOOK_SECRET_BILLING_PREVIOUS", PREVIOUS)


def subscription(status: str = "active", **metadata: str) -> dict[str, Any]:
    return {
        "id": "sub_0001", "object": "subscription", "status": status, "customer": "cus_0001",
        "start_date": NOW, "current_period_start": NOW, "current_period_end": NOW + 30 * 86400,
        "metadata": metadata or {"tandem_order": "ORD-000042", "tandem_contract": "CTR-000042"},
        "items": {"object": "list", "data": [{"id": "si_1", "quantity": 3}]},
    }  # fmt: skip


def invoice() -> dict[str, Any]:
    return {
        "id": "in_0001", "object": "invoice", "number": "TANDEM-0001", "currency": "gbp",
        "customer": "cus_0001", "subscription": "sub_0001", "status": "paid", "total": 10800,
        "amount_paid": 10800, "tax": 0, "charge": "ch_0001", "due_date": None,
        "collection_method": "charge_automatically", "created": NOW,
        "status_transitions": {"finalized_at": NOW, "paid_at": NOW + 60},
        "parent": {"type": "subscription_details", "subscription_details": {
            "subscription": "sub_0001",
            "metadata": {"tandem_order": "ORD-000042", "tandem_contract": "CTR-000042"}}},
        "lines": {"object": "list", "data": [
            {"description": "Platform Pro seats", "quantity": 3, "amount": 10800}]},
    }  # fmt: skip


def event(event_type: str, obj: dict[str, Any], event_id: str = "evt_0001") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "created": NOW + 5,
            "api_version": "2017-08-15", "data": {"object": obj}}  # fmt: skip


def post(client, payload: dict[str, Any], *, secret: str | None = SECRET,
         timestamp: int | None = None, header: str | None = None):  # fmt: skip
    body = json.dumps(payload, indent=2).encode()
    headers = {}
    if header is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = header
    elif secret is not None:
        # Stripe's test mode adds a v0 signature beside v1; it must be ignored.
        signed = signature_header(secret=secret, body=body, timestamp=timestamp)
        headers["HTTP_STRIPE_SIGNATURE"] = f"{signed},v0=deadbeef"
    return client.post(URL, data=body, content_type="application/json", **headers), body


@pytest.mark.django_db
def test_a_stripe_signed_event_is_stored_raw_with_stripes_id_and_type(
    client, stripe_billing, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response, body = post(client, event("customer.subscription.created", subscription()))
    # then
    assert (response.status_code, response.json()) == (
        202, {"status": "accepted", "event_id": "evt_0001"},
    )  # fmt: skip
    stored = InboundEvent.objects.get()
    assert (stored.system, stored.event_id, stored.event_type, stored.schema_version,
            stored.status, stored.signature_valid, stored.raw_body) == (
        "billing", "evt_0001", "customer.subscription.created", "2017-08-15", "received", True,
        body.decode(),
    )  # fmt: skip
    assert stored.headers["Stripe-Signature"].endswith(",v1=…")
    assert stored.correlation_id == "ORD-000042"
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_a_bad_signature_is_stored_rejected_with_the_reason(client, stripe_billing):
    # when
    response, _ = post(client, event("invoice.paid", invoice()), secret="whsec_wrong")
    # then
    assert (response.status_code, response.json()) == (
        401, {"status": "rejected", "reason": "signature does not match"},
    )  # fmt: skip
    stored = InboundEvent.objects.get()
    assert (stored.status, stored.signature_valid, stored.rejection_reason) == (
        "rejected", False, "signature does not match",
    )  # fmt: skip


@pytest.mark.django_db
def test_a_stale_timestamp_is_rejected(client, stripe_billing):
    # when
    response, _ = post(client, event("invoice.paid", invoice()), timestamp=int(time.time()) - 301)
    # then
    assert response.status_code == 401
    assert InboundEvent.objects.get().rejection_reason == (
        "signature timestamp is outside the 300 s tolerance"
    )


@pytest.mark.django_db
def test_the_sandbox_header_is_not_accepted_when_billing_is_stripe(client, stripe_billing):
    # given
    body = json.dumps(event("invoice.paid", invoice())).encode()
    # when
    response = client.post(
        URL, data=body, content_type="application/json",
        HTTP_X_TANDEM_SIGNATURE=signature_header(secret=SECRET, body=body),
    )  # fmt: skip
    # then
    assert response.status_code == 401
    assert InboundEvent.objects.get().rejection_reason == "missing Stripe-Signature header"


@pytest.mark.django_db
def test_during_a_rotation_the_previous_secret_is_accepted_and_a_repeat_is_a_duplicate(
    client, stripe_billing
):
    # when
    first, _ = post(client, event("invoice.paid", invoice()), secret=PREVIOUS)
    repeat, _ = post(client, event("invoice.paid", invoice()), secret=SECRET)
    # then
    assert (first.status_code, repeat.status_code) == (202, 200)
    assert repeat.json() == {"status": "duplicate", "event_id": "evt_0001"}
    stored = InboundEvent.objects.get()
    assert (stored.signature_valid, stored.duplicate_deliveries) == (True, 1)


@pytest.mark.django_db
def test_an_unmappable_stripe_event_is_kept_rejected_with_its_reason(client, stripe_billing):
    # given
    customer = {"id": "cus_0001", "object": "customer", "metadata": {}}
    post(client, event("customer.created", customer, event_id="evt_customer"))
    post(client, event("customer.subscription.created", subscription(status="incomplete"),
                       event_id="evt_incomplete"))  # fmt: skip
    # when
    for stored in InboundEvent.objects.order_by("pk"):
        inbound_event_process(inbound_event_id=stored.pk)
    # then
    assert list(
        InboundEvent.objects.order_by("pk").values_list("event_id", "status", "rejection_reason")
    ) == [
        ("evt_customer", "rejected",
         "Stripe event type 'customer.created' has no canonical counterpart"),
        ("evt_incomplete", "rejected",
         "subscription sub_0001 is 'incomplete', not active: nothing to map"),
    ]  # fmt: skip


def test_an_active_subscription_maps_onto_subscription_activated():
    # when
    canonical = stripe_event_canonical(event("customer.subscription.updated", subscription()))
    # then
    assert canonical == {
        "event_id": "evt_0001", "event_type": "subscription.activated", "schema_version": 1,
        "occurred_at": "2026-09-21T14:13:25Z", "correlation_id": "ORD-000042",
        "data": {
            "contract_id": "CTR-000042", "order_id": "ORD-000042",
            "billing_subscription_id": "sub_0001", "billing_customer_id": "cus_0001",
            "activated_at": "2026-09-21T14:13:20Z", "current_period_start": "2026-09-21",
            "current_period_end": "2026-10-21",
        },
    }  # fmt: skip
    assert event_validate(system="billing", payload=canonical) == "subscription.activated"


def test_a_finalized_invoice_maps_onto_invoice_posted():
    # when
    canonical = stripe_event_canonical(event("invoice.finalized", invoice()))
    # then
    assert canonical["data"] == {
        "external_invoice_id": "in_0001", "invoice_number": "TANDEM-0001",
        "order_id": "ORD-000042", "contract_id": "CTR-000042", "currency": "GBP",
        "total_amount": "108.00", "tax_amount": "0.00", "issue_date": "2026-09-21",
        "due_date": None,
        "lines": [{"description": "Platform Pro seats", "quantity": "3", "unit_price": "36.00",
                   "amount": "108.00"}],
    }  # fmt: skip
    assert event_validate(system="billing", payload=canonical) == "invoice.posted"


def test_a_paid_invoice_maps_onto_payment_received():
    # when
    canonical = stripe_event_canonical(event("invoice.payment_succeeded", invoice()))
    # then
    assert canonical["data"] == {
        "external_payment_id": "ch_0001", "external_invoice_id": "in_0001",
        "invoice_number": "TANDEM-0001", "amount": "108.00", "currency": "GBP",
        "received_at": "2026-09-21T14:14:20Z", "method": "card",
    }  # fmt: skip
    assert event_validate(system="billing", payload=canonical) == "payment.received"


def test_a_subscription_without_a_tandem_contract_is_unmappable(db):
    # when / then
    with pytest.raises(EventRejected, match="names no Tandem contract"):
        stripe_event_canonical(event("customer.subscription.created", subscription(x="y")))


def test_a_failed_invoice_payment_maps_onto_payment_failed():
    # given
    charge = {"id": "ch_0002", "object": "charge", "failure_message": "card declined"}
    failed = {**invoice(), "status": "open", "amount_due": 10800, "attempt_count": 1,
              "charge": charge}  # fmt: skip
    # when
    canonical = stripe_event_canonical(event("invoice.payment_failed", failed))
    # then
    assert canonical["data"] == {
        "external_payment_id": "ch_0002", "external_invoice_id": "in_0001", "amount": "108.00",
        "currency": "GBP", "failed_at": "2026-09-21T14:13:25Z", "failure_reason": "card declined",
        "method": "card",
    }  # fmt: skip
    assert event_validate(system="billing", payload=canonical) == "payment.failed"


def test_a_refunded_charge_maps_its_latest_refund_onto_payment_refunded():
    # given
    charge = {"id": "ch_0001", "object": "charge", "currency": "gbp", "invoice": "in_0001",
              "refunds": {"data": [{"id": "re_2", "amount": 800, "currency": "gbp",
                                    "created": NOW + 90, "reason": "requested_by_customer"},
                                   {"id": "re_1", "amount": 1000, "currency": "gbp"}]}}  # fmt: skip
    # when
    canonical = stripe_event_canonical(event("charge.refunded", charge))
    # then
    assert canonical["data"] == {
        "external_refund_id": "re_2", "external_payment_id": "ch_0001",
        "external_invoice_id": "in_0001", "amount": "8.00", "currency": "GBP",
        "refunded_at": "2026-09-21T14:14:50Z", "reason": "requested_by_customer",
    }  # fmt: skip
    assert event_validate(system="billing", payload=canonical) == "payment.refunded"


def test_a_credit_note_and_a_void_map_onto_their_canonical_events():
    # given
    note = {"id": "cn_1", "object": "credit_note", "number": "TANDEM-0001-CN-01",
            "invoice": "in_0001", "amount": 500, "currency": "gbp", "created": NOW,
            "memo": "outage", "reason": None}  # fmt: skip
    voided = {**invoice(), "status": "void",
              "status_transitions": {"finalized_at": NOW, "voided_at": NOW + 30}}  # fmt: skip
    # when
    credit = stripe_event_canonical(event("credit_note.created", note))
    void = stripe_event_canonical(event("invoice.voided", voided))
    # then
    assert credit["data"] == {
        "external_credit_note_id": "cn_1", "credit_note_number": "TANDEM-0001-CN-01",
        "external_invoice_id": "in_0001", "amount": "5.00", "currency": "GBP",
        "issued_at": "2026-09-21T14:13:20Z", "reason": "outage",
    }  # fmt: skip
    assert void["data"] == {
        "external_invoice_id": "in_0001", "voided_at": "2026-09-21T14:13:50Z",
        "invoice_number": "TANDEM-0001",
    }  # fmt: skip
    assert event_validate(system="billing", payload=credit) == "credit_note.issued"
    assert event_validate(system="billing", payload=void) == "invoice.voided"


def deleted(subscription_id: str = "sub_0001", **metadata: str) -> dict[str, Any]:
    """A subscription as Stripe sends it in customer.subscription.deleted."""
    return {
        **subscription("canceled", **metadata), "id": subscription_id, "canceled_at": NOW,
        "ended_at": NOW, "cancel_at_period_end": False,
        "cancellation_details": {"reason": "payment_failed", "comment": None, "feedback": None},
    }  # fmt: skip


def test_a_deleted_subscription_maps_onto_the_cancellation_of_its_contract():
    # when
    canonical = stripe_event_canonical(event("customer.subscription.deleted", deleted()))
    # then
    assert canonical == {
        "event_id": "evt_0001", "event_type": "cancellation.processed", "schema_version": 1,
        "occurred_at": "2026-09-21T14:13:25Z", "correlation_id": "CTR-000042",
        "data": {
            "contract_id": "CTR-000042", "cancellation_id": "sub_0001",
            "effective_date": "2026-09-21",
            "reason": "subscription sub_0001 ended in Stripe: payment_failed",
        },
    }  # fmt: skip
    assert event_validate(system="billing", payload=canonical) == "cancellation.processed"


def test_a_deleted_subscription_still_active_or_without_a_contract_is_unmappable(db):
    # when / then
    with pytest.raises(EventRejected, match="is 'active', not canceled"):
        stripe_event_canonical(event("customer.subscription.deleted", subscription()))
    with pytest.raises(EventRejected, match="names no Tandem contract"):
        stripe_event_canonical(event("customer.subscription.deleted", deleted(x="y")))


def _billed_contract() -> Any:
    """An active contract (10 x 25.00 monthly, 2026) whose billing subscription is sub_0042."""
    contract = factories.contract()
    services.contract_activate(contract=contract, actor=factories.actor(), reason="test setup")
    md.external_id_link(
        record=contract, system="billing", object_type="subscription", external_id="sub_0042",
        actor=factories.actor(), reason="subscribed",
    )  # fmt: skip
    contract.refresh_from_db()
    return contract


@pytest.mark.django_db
def test_a_signed_deletion_from_stripe_becomes_the_contracts_cancellation_and_its_workflow(
    client, stripe_billing
):
    # given: a subscription Stripe ended itself (no Tandem metadata: found by the crosswalk)
    contract = _billed_contract()
    payload = event("customer.subscription.deleted", deleted("sub_0042", x="y"), "evt_del_1")
    # when: Stripe delivers it twice
    first, _ = post(client, payload)
    again, _ = post(client, payload)
    inbound_event_process(inbound_event_id=InboundEvent.objects.get().pk)
    # then: one cancellation version, crediting the rest of September, and its workflow
    assert (first.status_code, again.status_code) == (202, 200)
    stored = InboundEvent.objects.get()
    assert (stored.status, stored.canonical_type, stored.correlation_id) == (
        "processed", "cancellation.processed", contract.enterprise_id,
    )  # fmt: skip
    version = contract.versions.get(number=2)
    assert (version.kind, version.state, version.effective_date.isoformat()) == (
        "cancellation", "pending", "2026-09-21",
    )  # fmt: skip
    assert (version.cause, version.cause_ref, version.change_key) == (
        "event", "sub_0042", "cancellation:sub_0042",
    )  # fmt: skip
    # 10 x 25.00 monthly, 10 of September's 30 days left
    assert (version.changes["mode"], version.changes["credit_total"]) == ("now", "83.30")
    run = WorkflowRun.objects.get(kind="cancellation")
    assert (run.subject_id, run.subject_version) == (contract.enterprise_id, 2)


@pytest.mark.django_db
def test_the_deletion_that_tandems_own_cancellation_caused_is_absorbed(client, stripe_billing):
    # given: Tandem cancelled the contract (v2), which ended the subscription in Stripe
    contract = _billed_contract()
    lifecycle.contract_cancellation_record(
        contract=contract, mode=lifecycle.CANCEL_NOW, effective_date=dt.date(2026, 9, 21),
        cause="operator", cause_ref="ops@example.com", change_key="op-1",
        actor=factories.actor(), reason="customer left",
    )  # fmt: skip
    # when
    mine = deleted("sub_0042", tandem_contract=contract.enterprise_id)
    post(client, event("customer.subscription.deleted", mine, "evt_del_2"))
    inbound_event_process(inbound_event_id=InboundEvent.objects.get().pk)
    # then: nothing more recorded, the event kept with why
    stored = InboundEvent.objects.get()
    assert (stored.status, stored.rejection_reason) == (
        "duplicate_absorbed",
        f"{contract.enterprise_id} is already cancelled by v2 (ops@example.com)",
    )  # fmt: skip
    assert list(contract.versions.values_list("number", "kind")) == [
        (1, "initial"), (2, "cancellation"),
    ]  # fmt: skip
    assert not WorkflowRun.objects.filter(kind="cancellation").exists()
