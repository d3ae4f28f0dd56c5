"""Poison events: an event whose processing raises an unexpected error ends dead, with its
traceback and an exception for integration support, instead of being re-sent forever; the
sweeper cannot be starved by such events; dead letters are reprocessed or discarded by a
person with a reason, audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.utils import timezone

from core.audit import Actor
from core.errors import Refused
from exceptions.models import OperationalException
from orchestration.events import services
from orchestration.events.services import dead_letter_act, inbound_events_sweep
from orchestration.models import DeadLetterAction, InboundEvent
from orchestration.tasks import process_inbound_event
from q2c.models import Order, Quote
from tests import factories
from tests.orchestration.events.test_inbound_processing import example, received


@pytest.fixture
def uk_entity(db):  # type: ignore[no-untyped-def]
    return factories.legal_entity(code="UK01", erp_subsidiary="2", tax_registration="GB1")


def _quote_with(**changes: object) -> dict:
    payload = example("quote.approved")
    payload["data"].update(changes)
    return payload


def _fails_with(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def trigger(**_: object) -> None:
        raise error

    monkeypatch.setattr(services, "event_workflow_trigger", trigger)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [
        # (impossible dates are refused at the door: test_hostile_webhooks.py)
        {"lines": [{**example("quote.approved")["data"]["lines"][1],
                    "quantity": "999999999999999", "unit_price": "999999999999999.999999"}]},
    ],
)  # fmt: skip
def test_a_signed_quote_the_code_cannot_take_ends_visible_and_is_not_sent_again(
    webhook_secrets, uk_entity, changes
):
    # given: signed, and shaped as the schema says, but impossible
    event = received("cpq", _quote_with(**changes), webhook_secrets["current"])
    # when
    process_inbound_event(event.pk)
    # then: no longer waiting for the sweeper, the reason kept, nothing created
    event.refresh_from_db()
    assert event.status in {"rejected", "dead"}
    assert event.rejection_reason != ""
    assert (Quote.objects.count(), Order.objects.count()) == (0, 0)
    if event.status == "dead":
        assert OperationalException.objects.filter(category="internal_error").count() == 1
    later = timezone.now() + dt.timedelta(hours=1)
    assert inbound_events_sweep(now=later) == 0


@pytest.mark.django_db
def test_an_unexpected_error_makes_the_event_dead_with_its_traceback_and_an_exception(
    webhook_secrets, uk_entity, monkeypatch
):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    _fails_with(monkeypatch, RuntimeError("handler bug"))
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("dead", 1)
    assert event.rejection_reason == (
        "processing failed (an unexpected error): RuntimeError: handler bug"
    )
    assert "Traceback (most recent call last)" in event.last_error
    assert "RuntimeError: handler bug" in event.last_error
    exc = OperationalException.objects.get()
    assert (exc.category, exc.owner_team, exc.system, exc.step, exc.error_class) == (
        "internal_error", "integration_support", "cpq", "process_inbound_event", "RuntimeError",
    )  # fmt: skip
    assert exc.context["inbound_event"] == event.pk
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_a_transient_error_is_tried_again_until_the_cap_then_dead(
    webhook_secrets, uk_entity, monkeypatch
):
    # given
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    _fails_with(monkeypatch, OperationalError("server closed the connection"))
    # when: fewer failures than the cap
    for _ in range(services.EVENT_MAX_ATTEMPTS - 1):
        process_inbound_event(event.pk, swept=True)
    # then: still received (the sweeper sends it again), no exception yet
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("received", services.EVENT_MAX_ATTEMPTS - 1)
    assert OperationalException.objects.count() == 0
    # when: the last allowed attempt fails the same way
    process_inbound_event(event.pk, swept=True)
    # then
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("dead", services.EVENT_MAX_ATTEMPTS)
    assert event.rejection_reason.startswith("processing failed (5 attempts): OperationalError")
    assert OperationalException.objects.filter(category="internal_error").count() == 1


@pytest.mark.django_db
def test_events_that_keep_failing_never_starve_a_lost_event_in_the_sweep(
    webhook_secrets, uk_entity, monkeypatch
):
    # given: a batch's worth of events that failed before, older than a lost one
    monkeypatch.setattr(services, "SWEEP_BATCH", 3)
    failing = [
        received(
            "cpq", {**example("quote.approved"), "event_id": f"evt_bad_{n}"}, "whsec_current_cpq"
        )
        for n in range(3)
    ]
    InboundEvent.objects.filter(pk__in=[e.pk for e in failing]).update(attempts=2)
    lost = received(
        "cpq", {**example("quote.approved"), "event_id": "evt_lost"}, "whsec_current_cpq"
    )
    sent: list[int] = []
    monkeypatch.setattr(services, "inbound_event_enqueue", lambda pk, swept=False: sent.append(pk))
    # when
    inbound_events_sweep(now=timezone.now() + dt.timedelta(minutes=5))
    # then
    assert sent[0] == lost.pk
    assert len(sent) == 3


def _dead_event(webhook_secrets, monkeypatch) -> InboundEvent:  # type: ignore[no-untyped-def]
    event = received("cpq", example("quote.approved"), webhook_secrets["current"])
    _fails_with(monkeypatch, RuntimeError("handler bug"))
    process_inbound_event(event.pk)
    monkeypatch.undo()
    event.refresh_from_db()
    return event


@pytest.mark.django_db
def test_support_reprocesses_a_dead_event_with_a_reason_and_it_is_audited(
    webhook_secrets, uk_entity, monkeypatch, make_user, django_capture_on_commit_callbacks
):
    # given
    event = _dead_event(webhook_secrets, monkeypatch)
    monkeypatch.setenv("WEBHOOK_SECRET_CPQ", webhook_secrets["current"])
    ivan = make_user("ivan", role="integration_support")
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        dead_letter_act(
            inbound_event_id=event.pk, action="reprocess", actor=Actor.person(ivan),
            reason="handler fixed in 2.4.1",
        )  # fmt: skip
    # then
    event.refresh_from_db()
    assert (event.status, event.attempts, event.rejection_reason) == ("received", 0, "")
    assert len(callbacks) == 1
    action = DeadLetterAction.objects.get()
    assert (action.action, action.from_status, action.reason, action.actor) == (
        "reprocess", "dead", "handler fixed in 2.4.1", ivan,
    )  # fmt: skip
    row = action.history.get()
    assert (row.history_user, row.history_change_reason) == (
        ivan, "reprocess: handler fixed in 2.4.1",
    )  # fmt: skip
    # ... and processing it now succeeds
    process_inbound_event(event.pk)
    event.refresh_from_db()
    assert event.status == "processed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, action, reason, message",
    [
        ("integration_support", "discard", "  ", "give a reason"),
        ("integration_support", "delete", "x", "unknown action 'delete'"),
    ],
)
def test_a_refused_dead_letter_action_changes_nothing(
    webhook_secrets, uk_entity, monkeypatch, make_user, role, action, reason, message
):
    # given
    event = _dead_event(webhook_secrets, monkeypatch)
    person = make_user("p", role=role)
    # when
    with pytest.raises(Refused) as refused:
        dead_letter_act(
            inbound_event_id=event.pk, action=action, actor=Actor.person(person), reason=reason
        )
    # then
    assert refused.value.message == message
    event.refresh_from_db()
    assert event.status == "dead"
    assert DeadLetterAction.objects.count() == 0


@pytest.mark.django_db
def test_an_unauthenticated_delivery_can_be_discarded_but_never_reprocessed(client, make_user):
    # given: an unsigned delivery, rejected at the door
    response = client.post(
        "/webhooks/cpq/", data=b'{"event_id": "x"}', content_type="application/json"
    )
    assert response.status_code == 401
    event = InboundEvent.objects.get()
    ivan = Actor.person(make_user("ivan", role="integration_support"))
    # when
    with pytest.raises(Refused) as refused:
        dead_letter_act(inbound_event_id=event.pk, action="reprocess", actor=ivan, reason="try")
    # then
    assert "was not authenticated" in refused.value.message
    event.refresh_from_db()
    assert event.status == "rejected"
    # when
    dead_letter_act(inbound_event_id=event.pk, action="discard", actor=ivan, reason="noise")
    # then
    event.refresh_from_db()
    assert event.status == "discarded"
    assert list(DeadLetterAction.objects.values_list("action", "from_status")) == [
        ("discard", "rejected")
    ]


@pytest.mark.django_db
def test_a_person_without_the_permission_may_not_act_on_a_dead_letter(
    webhook_secrets, uk_entity, monkeypatch, make_user
):
    # given
    event = _dead_event(webhook_secrets, monkeypatch)
    sam = make_user("sam", role="sales_ops")
    # when
    with pytest.raises(PermissionDenied):
        dead_letter_act(
            inbound_event_id=event.pk, action="discard", actor=Actor.person(sam), reason="noise"
        )
    # then
    event.refresh_from_db()
    assert event.status == "dead"
    assert DeadLetterAction.objects.count() == 0
