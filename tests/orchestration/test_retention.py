"""Retention: inbound and outbound bodies older than TANDEM_RETENTION_DAYS are emptied by the
beat job or ``manage.py retention_purge``, in batches; metadata stays; the purge is recorded
with the system actor; ``--dry-run`` only counts."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.audit import Actor
from core.errors import Refused
from orchestration.events.services import dead_letter_act
from orchestration.models import InboundEvent, InboundStatus, OutboundCall, RetentionPurge
from orchestration.retention import retention_purge
from orchestration.tasks import retention_purge as retention_purge_task
from tandem.celery import app

BODY = '{"data": {"email": "ada@example.com"}}'


def _event(
    *, days_old: int, status: str = InboundStatus.PROCESSED, event_id: str = ""
) -> InboundEvent:
    event = InboundEvent.objects.create(
        system="cpq", event_id=event_id or f"evt-{InboundEvent.objects.count()}",
        event_type="quote.approved", signature_valid=True, raw_body=BODY,
        headers={"Content-Type": "application/json"}, correlation_id="ENT-1",
        received_at=timezone.now() - dt.timedelta(days=days_old),
    )  # fmt: skip
    InboundEvent.objects.filter(pk=event.pk).update(status=status)
    return event


def _call(*, days_old: int) -> OutboundCall:
    return OutboundCall.objects.create(
        system="crm", operation="account_upsert", method="POST", path="accounts", status_code=200,
        outcome="ok", latency_ms=5, correlation_id="ENT-1", request_body=BODY,
        response_body='{"id": "001"}', created_at=timezone.now() - dt.timedelta(days=days_old),
    )  # fmt: skip


@pytest.mark.django_db
def test_old_bodies_are_emptied_metadata_kept_and_the_purge_recorded_by_the_system(settings):
    # given
    settings.TANDEM_RETENTION_DAYS = 30
    old_processed = _event(days_old=31)
    old_rejected = _event(days_old=40, status=InboundStatus.REJECTED)
    old_unprocessed = _event(days_old=31, status=InboundStatus.RECEIVED)
    young = _event(days_old=29)
    old_call, young_call = _call(days_old=31), _call(days_old=1)
    # when
    run = retention_purge(actor=Actor.system("scheduler"))
    # then
    bodies = dict(InboundEvent.objects.values_list("pk", "raw_body"))
    assert bodies == {old_processed.pk: "", old_rejected.pk: "", old_unprocessed.pk: BODY,
                      young.pk: BODY}  # fmt: skip
    emptied = InboundEvent.objects.get(pk=old_processed.pk)
    assert (emptied.event_id, emptied.event_type, emptied.status, emptied.correlation_id,
            emptied.headers, emptied.body_purged_at) == (
        old_processed.event_id, "quote.approved", "processed", "ENT-1",
        {"Content-Type": "application/json"}, run.started_at,
    )  # fmt: skip
    calls = dict(OutboundCall.objects.values_list("pk", "request_body"))
    assert calls == {old_call.pk: "", young_call.pk: BODY}
    assert OutboundCall.objects.get(pk=old_call.pk).response_body == ""
    assert OutboundCall.objects.get(pk=old_call.pk).status_code == 200
    assert (run.inbound_bodies, run.outbound_bodies, run.retention_days, run.triggered_by) == (
        2, 1, 30, "scheduler",
    )  # fmt: skip
    history = run.history.get()
    assert (history.history_user.username, history.history_change_reason) == (
        "scheduler", "retention purge",
    )  # fmt: skip


@pytest.mark.django_db
def test_the_purge_works_in_batches_and_a_second_run_finds_nothing(settings):
    # given
    settings.TANDEM_RETENTION_DAYS = 7
    settings.TANDEM_RETENTION_BATCH = 2
    for _ in range(5):
        _event(days_old=8)
    _call(days_old=8)
    # when
    first = retention_purge(actor=Actor.system("scheduler"))
    second = retention_purge(actor=Actor.system("scheduler"))
    # then
    assert (first.inbound_bodies, first.outbound_bodies, first.batches) == (5, 1, 3 + 1)
    assert (second.inbound_bodies, second.outbound_bodies, second.batches) == (0, 0, 0)
    assert set(InboundEvent.objects.values_list("raw_body", flat=True)) == {""}


@pytest.mark.django_db
def test_the_dry_run_counts_and_changes_nothing(settings):
    # given
    settings.TANDEM_RETENTION_DAYS = 30
    _event(days_old=31)
    _event(days_old=2)
    _call(days_old=31)
    out = io.StringIO()
    # when
    call_command("retention_purge", "--dry-run", stdout=out)
    # then
    assert out.getvalue().startswith("would empty 1 inbound and 1 outbound bodies older than ")
    assert list(InboundEvent.objects.values_list("raw_body", flat=True)) == [BODY, BODY]
    assert OutboundCall.objects.get().request_body == BODY
    assert not RetentionPurge.objects.exists()


@pytest.mark.django_db
def test_the_command_purges_and_says_what_it_did(settings):
    # given
    settings.TANDEM_RETENTION_DAYS = 30
    _event(days_old=31)
    out = io.StringIO()
    # when
    call_command("retention_purge", stdout=out)
    # then
    assert "emptied 1 inbound and 0 outbound bodies" in out.getvalue()
    assert InboundEvent.objects.get().raw_body == ""
    assert RetentionPurge.objects.get().triggered_by == "scheduler"


@pytest.mark.django_db
def test_the_beat_job_runs_the_registered_purge_task(settings):
    # given
    settings.TANDEM_RETENTION_DAYS = 30
    _event(days_old=31)
    _call(days_old=31)
    entry = settings.CELERY_BEAT_SCHEDULE["retention-purge"]
    # when
    emptied = app.tasks[entry["task"]].apply().get()
    # then
    assert entry["task"] == retention_purge_task.name == "orchestration.retention_purge"
    assert emptied == 2
    assert RetentionPurge.objects.get().history.get().history_user.username == "scheduler"


@pytest.mark.django_db
def test_a_purged_dead_letter_can_be_discarded_but_not_reprocessed(settings, make_user):
    # given
    settings.TANDEM_RETENTION_DAYS = 30
    purged = _event(days_old=31, status=InboundStatus.REJECTED)
    other = _event(days_old=31, status=InboundStatus.REJECTED)
    retention_purge(actor=Actor.system("scheduler"))
    support = Actor.person(make_user("support", role="integration_support"))
    # when
    with pytest.raises(Refused, match="its body was not kept"):
        dead_letter_act(inbound_event_id=purged.pk, action="reprocess", actor=support,
                        reason="try again")  # fmt: skip
    dead_letter_act(inbound_event_id=other.pk, action="discard", actor=support, reason="old")
    # then
    statuses = dict(InboundEvent.objects.values_list("pk", "status"))
    assert statuses == {purged.pk: "rejected", other.pk: "discarded"}
