import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration.events.catalog import SCHEMA_DIR
from orchestration.events.errors import EventNotReady
from orchestration.events.selectors import inbound_events_rejected
from orchestration.events.services import inbound_event_receive
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent
from orchestration.tasks import process_inbound_event
from orchestration.workflows.models import WorkflowRun
from q2c.models import Invoice, Order, Quote
from tests import factories


def example(event_type: str) -> dict:
    schema = json.loads(Path(SCHEMA_DIR, event_type, "v1.json").read_text())
    return json.loads(json.dumps(schema["examples"][0]))


def received(system: str, payload: dict, secret: str) -> InboundEvent:
    body = json.dumps(payload).encode()
    receipt = inbound_event_receive(
        system=system,
        raw_body=body,
        headers={"X-Tandem-Signature": signature_header(secret=secret, body=body)},
        now=time.time(),
    )
    assert receipt.http_status == 202
    return receipt.event


@pytest.fixture
def uk_entity(db):  # type: ignore[no-untyped-def]
    return factories.legal_entity(code="UK01", erp_subsidiary="2", tax_registration="GB1")


@pytest.mark.django_db
def test_a_valid_event_is_processed_and_mapped(webhook_secrets, uk_entity):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.canonical_type, event.rejection_reason) == (
        "processed", "quote.approved", "",
    )  # fmt: skip
    assert event.processed_at is not None
    order = Order.objects.get(quote__cpq_quote_id="a0x5e000001AbCdEAF")
    assert (order.state, order.account, order.total_amount) == (
        "received", None, Decimal("2400.0000"),
    )  # fmt: skip
    assert event.correlation_id == order.enterprise_id
    run = WorkflowRun.objects.get(subject_id=order.enterprise_id)
    assert (run.kind, run.steps.get(position=0).state) == ("quote_to_cash", "queued")


@pytest.mark.django_db
def test_the_same_quote_under_another_event_id_is_absorbed(webhook_secrets, uk_entity):
    # given
    first = received("cpq", example("quote.approved"), webhook_secrets["current"])
    process_inbound_event(first.pk)
    again = received(
        "cpq", {**example("quote.approved"), "event_id": "evt_other"}, webhook_secrets["current"]
    )
    # when
    process_inbound_event(again.pk)
    # then
    again.refresh_from_db()
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed", "quote a0x5e000001AbCdEAF was already received as QTE-000001",
    )  # fmt: skip
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_legal_entity_is_rejected_and_creates_nothing(webhook_secrets):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == (
        "rejected", "unknown legal entity code 'UK01'",
    )  # fmt: skip
    assert (Quote.objects.count(), Order.objects.count(), WorkflowRun.objects.count()) == (0, 0, 0)


@pytest.mark.django_db
def test_a_system_specific_event_maps_onto_its_canonical_type_and_is_mirrored(webhook_secrets):
    # given
    order = factories.order()
    payload = {**example("invoice.posted"), "event_type": "invoice.finalized"}
    payload["data"] = {**payload["data"], "order_id": order.enterprise_id, "contract_id": None}
    event = received("billing", payload, "whsec_billing")
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.event_type, event.canonical_type) == (
        "processed", "invoice.finalized", "invoice.posted",
    )  # fmt: skip
    invoice = Invoice.objects.get(order=order)
    assert (invoice.number, invoice.state, invoice.total_amount, invoice.tax_amount) == (
        "INV-2026-0001", "posted", Decimal("1080.0000"), Decimal("180.0000"),
    )  # fmt: skip


@pytest.mark.django_db
def test_an_event_that_arrives_before_its_order_waits_and_changes_nothing(webhook_secrets):
    # given
    payload = example("invoice.posted")  # names CTR-000042, which does not exist yet
    event = received("billing", payload, "whsec_billing")
    # when
    with pytest.raises(EventNotReady):
        process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == ("received", "")
    assert Invoice.objects.count() == 0


def _without(payload: dict, *path: str) -> dict:
    target = payload
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return payload


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "canonical_type", "reason"),
    [
        (_without(example("quote.approved"), "data", "cpq_quote_id"), "quote.approved",
         "quote.approved v1 schema: 'cpq_quote_id' is a required property (at $.data)"),
        ({**example("quote.approved"), "data": {**example("quote.approved")["data"],
          "lines": [{**example("quote.approved")["data"]["lines"][0], "unit_price": 40.0}]}},
         "quote.approved",
         'quote.approved v1 schema: fails type "string" (at $.data.lines[0].unit_price)'),
        ({**example("quote.approved"), "data": {**example("quote.approved")["data"],
          "lines": []}}, "quote.approved",
         "quote.approved v1 schema: fails minItems 1 (at $.data.lines)"),
        ({**example("quote.approved"), "data": {**example("quote.approved")["data"],
          "currency": "pounds"}}, "quote.approved",
         "quote.approved v1 schema: does not match '^[A-Z]{3}$' (at $.data.currency)"),
        ({**example("quote.approved"), "schema_version": 2}, "quote.approved",
         "quote.approved: no schema v2 in this release"),
        ({**example("quote.approved"), "schema_version": "1"}, "quote.approved",
         "quote.approved: schema_version must be an integer, got '1'"),
        ({**example("quote.approved"), "event_type": "quote.exploded"}, "",
         "unknown event type 'quote.exploded' from cpq"),
        ({**example("order.accepted")}, "order.accepted",
         "cpq does not send order.accepted events (expected from erp)"),
    ],
)  # fmt: skip
def test_invalid_unknown_and_unmappable_events_are_refused_at_the_door_and_kept_as_rejected(
    webhook_secrets, payload, canonical_type, reason
):
    # given
    body = json.dumps(payload).encode()
    headers = {"X-Tandem-Signature": signature_header(secret=webhook_secrets["current"], body=body)}
    # when
    receipt = inbound_event_receive(system="cpq", raw_body=body, headers=headers, now=time.time())
    process_inbound_event(receipt.event.pk)
    # then: the sender is told why at once; processing the stored row changes nothing
    assert (receipt.http_status, receipt.body) == (400, {"status": "rejected", "reason": reason})
    event = InboundEvent.objects.get()
    assert (event.status, event.canonical_type, event.rejection_reason, event.raw_body,
            event.signature_valid, event.event_id) == (
        "rejected", canonical_type, reason, body.decode(), True, payload["event_id"],
    )  # fmt: skip
    assert list(inbound_events_rejected(system="cpq")) == [event]
    assert list(inbound_events_rejected(system="erp")) == []


@pytest.mark.django_db
def test_processing_twice_changes_nothing(webhook_secrets, uk_entity):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    process_inbound_event(event.pk)
    before = InboundEvent.objects.values().get(pk=event.pk)
    # when
    process_inbound_event(event.pk)
    # then
    assert InboundEvent.objects.values().get(pk=event.pk) == before


@pytest.mark.django_db
def test_a_rejected_delivery_is_not_processed(client, webhook_secrets):
    # given
    body = json.dumps(example("quote.approved")).encode()
    client.post("/webhooks/cpq/", data=body, content_type="application/json")
    event = InboundEvent.objects.get()
    before = InboundEvent.objects.values().get(pk=event.pk)
    # when
    process_inbound_event(event.pk)
    # then
    assert InboundEvent.objects.values().get(pk=event.pk) == before
    assert before["rejection_reason"] == "missing X-Tandem-Signature header"


@pytest.mark.django_db
def test_a_missing_event_row_is_a_no_op():
    # when
    process_inbound_event(987654)
    # then
    assert InboundEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_quote_naming_a_merged_away_crm_id_is_booked_on_the_survivor(webhook_secrets, make_user):
    # given: two accounts merged; the loser's CRM id 001L now belongs to the survivor
    from masterdata.services import merges as md
    from orchestration.workflows import engine
    from tests.masterdata import helpers as md_helpers

    factories.legal_entity(code="UK01", erp_subsidiary="2", tax_registration="GB1")
    world = md_helpers.world()
    md.merge_request(
        survivor=world.survivor, loser=world.loser, actor=md_helpers.steward(make_user),
        reason="same company, two CRM records",
    )  # fmt: skip
    payload = example("quote.approved")
    payload["data"]["account"] = {
        **payload["data"]["account"],
        "name": "Nothing Alike GmbH", "domain": "", "tax_id": "", "crm_id": "001L",
    }  # fmt: skip
    event = received("cpq", payload, webhook_secrets["current"])
    # when: the CPQ's webhook is processed and the workflow resolves the customer
    process_inbound_event(event.pk)
    order = Order.objects.get(quote__cpq_quote_id=payload["data"]["cpq_quote_id"])
    run = WorkflowRun.objects.get(subject_id=order.enterprise_id)
    for name in ("validate_quote", "resolve_customer"):
        assert engine.step_execute(step_id=run.steps.get(name=name).pk) == "succeeded"
    # then
    order.refresh_from_db()
    assert order.account_id == world.survivor.pk
    assert run.steps.get(name="resolve_customer").external_id == world.survivor.enterprise_id
