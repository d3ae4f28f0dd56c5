"""Properties of the canonical event schemas and the Stripe event mapper: on any payload they
either answer or refuse with ``EventRejected`` (never another exception), every schema's own
example is valid, and the mapper's output for a well-formed Stripe event is a valid canonical
event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.records import SYSTEMS
from orchestration.events.catalog import EVENT_SOURCES, SCHEMA_DIR, event_validate
from orchestration.events.errors import EventRejected
from orchestration.events.stripe_events import stripe_event_canonical
from tests.fuzz.conftest import fuzz_settings, json_values, mutations_of
from tests.orchestration.events.test_stripe_webhooks import event, invoice, subscription

SCHEMA_EXAMPLES = [
    (sorted(systems)[0], event_type, example)
    for event_type, systems in EVENT_SOURCES.items()
    for path in sorted(Path(SCHEMA_DIR, event_type).glob("v*.json"))
    for example in json.loads(path.read_text())["examples"]
]


def _refused_or_canonical(system: str, payload: Any) -> str | None:
    try:
        return event_validate(system=system, payload=payload)
    except EventRejected as exc:
        assert exc.reason  # a refusal always says why
        return None


def test_every_schema_example_is_valid_for_its_sender():
    # when
    canonical = [event_validate(system=system, payload=example)
                 for system, _, example in SCHEMA_EXAMPLES]  # fmt: skip
    # then
    assert canonical == [event_type for _, event_type, _ in SCHEMA_EXAMPLES]
    assert {event_type for _, event_type, _ in SCHEMA_EXAMPLES} == set(EVENT_SOURCES)


@given(system=st.sampled_from(SYSTEMS), payload=json_values)
@fuzz_settings(1500)
def test_any_json_is_validated_or_refused_with_a_reason(system, payload):
    # when / then
    result = _refused_or_canonical(system, payload)
    assert result is None or result in EVENT_SOURCES


@pytest.mark.parametrize("system, event_type, example", SCHEMA_EXAMPLES,
                         ids=[f"{e[1]}-{i}" for i, e in enumerate(SCHEMA_EXAMPLES)])  # fmt: skip
def test_mutated_schema_examples_are_validated_or_refused(system, event_type, example):
    # given: each schema's example with fields removed or replaced by hostile values
    @given(payload=mutations_of(example))
    @fuzz_settings(100)
    def check(payload: dict[str, Any]) -> None:
        # when / then
        assert _refused_or_canonical(system, payload) in (None, event_type)

    check()


STRIPE_EVENTS = [
    event("customer.subscription.created", subscription()),
    event("customer.subscription.updated", subscription()),
    event("invoice.finalized", invoice()),
    event("invoice.paid", invoice()),
    event("invoice.payment_failed", invoice()),
    event("invoice.voided", invoice()),
    event("charge.refunded", {"id": "ch_0001", "object": "charge", "currency": "gbp",
                              "invoice": "in_0001", "refunds": {"data": [
                                  {"id": "re_1", "amount": 500, "currency": "gbp",
                                   "created": 1_790_000_100, "reason": "requested"}]}}),
    event("credit_note.created", {"id": "cn_1", "object": "credit_note", "currency": "gbp",
                                  "invoice": "in_0001", "amount": 500, "number": "CN-1",
                                  "created": 1_790_000_100}),
]  # fmt: skip


@pytest.mark.django_db
def test_well_formed_stripe_events_map_onto_valid_canonical_events():
    # when
    mapped = [stripe_event_canonical(stripe_event) for stripe_event in STRIPE_EVENTS]
    # then
    assert [event_validate(system="billing", payload=envelope) for envelope in mapped] == [
        "subscription.activated", "subscription.activated", "invoice.posted",
        "payment.received", "payment.failed", "invoice.voided", "payment.refunded",
        "credit_note.issued",
    ]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("stripe_event", STRIPE_EVENTS, ids=[e["type"] for e in STRIPE_EVENTS])
def test_mutated_stripe_events_map_or_are_refused_with_a_reason(stripe_event):
    # given: a Stripe event with fields (at any depth) removed or replaced by hostile values
    @given(payload=mutations_of(stripe_event))
    @fuzz_settings(150)
    def check(payload: dict[str, Any]) -> None:
        # when
        try:
            envelope = stripe_event_canonical(payload)
        except EventRejected as exc:
            assert exc.reason
            return
        # then: what it maps is validated or refused like any canonical event
        assert _refused_or_canonical("billing", envelope) in (None, envelope["event_type"])

    check()
