"""What the records refuse while an event is handed over: a refusal of the event's data
rejects the event with its message; a lost race (or a refused transition) is not about the
data and propagates, leaving the event received to be tried again."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import Refused
from orchestration.models import InboundEvent
from orchestration.tasks import process_inbound_event
from q2c import services
from q2c.models import Order, Quote
from tests import factories
from tests.orchestration.events.test_inbound_processing import example, received


@pytest.fixture
def uk_entity(db):  # type: ignore[no-untyped-def]
    return factories.legal_entity(code="UK01", erp_subsidiary="2", tax_registration="GB1")


def refusing(kind: Refused.Kind) -> Any:
    def refuse(**_: Any) -> None:
        raise Refused("line 1: quantity must not be negative", kind=kind)

    return refuse


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [Refused.Kind.INVALID, Refused.Kind.STATE, Refused.Kind.DUPLICATE])
def test_a_refusal_of_the_events_data_rejects_the_event(
    webhook_secrets, uk_entity, monkeypatch, kind
):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    monkeypatch.setattr(services, "quote_create", refusing(kind))
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.canonical_type, event.rejection_reason) == (
        "rejected",
        "quote.approved",
        "line 1: quantity must not be negative",
    )
    assert (Quote.objects.count(), Order.objects.count()) == (0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [Refused.Kind.CONFLICT, Refused.Kind.TRANSITION])
def test_a_refusal_that_is_not_about_the_data_leaves_the_event_to_be_tried_again(
    webhook_secrets, uk_entity, monkeypatch, kind
):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    monkeypatch.setattr(services, "quote_create", refusing(kind))
    # when
    process_inbound_event(event.pk)
    # then: counted as a failed attempt, left for the sweeper to send again
    assert InboundEvent.objects.values_list("status", "rejection_reason", "attempts").get(
        pk=event.pk
    ) == ("received", "", 1)
    assert (Quote.objects.count(), Order.objects.count()) == (0, 0)
