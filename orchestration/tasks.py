"""Orchestration tasks. Thin: take a primary key, call a service."""

from __future__ import annotations

import datetime as dt
import random

from celery import Task, shared_task
from django.utils import timezone

from orchestration import merge_push as merge_push_service
from orchestration import usage_report as usage_report_service
from orchestration.events.errors import EventNotReady
from orchestration.events.services import (
    inbound_event_fail,
    inbound_event_process,
    inbound_event_reject,
    inbound_events_sweep,
)
from orchestration.models import InboundEvent

# About as long as the 30 growing retries of a first delivery last.
NOT_READY_GIVE_UP = dt.timedelta(minutes=30)


@shared_task(
    name="orchestration.process_inbound_event",
    bind=True,
    max_retries=30,
    default_retry_delay=2,
)
def process_inbound_event(self: Task, inbound_event_id: int, swept: bool = False) -> None:
    """Validate and hand over one received inbound event (a no-op if already handled).

    An event that arrived before what it refers to (a payment before its invoice) stays
    ``received`` and is tried again with growing delays; the last try rejects it, visibly.
    A ``swept`` try (sent again by the sweeper) does not start its own chain of retries: the
    next sweep tries again, and once the event is older than the retries would have lasted,
    it is rejected, visibly. Any other error is a poison event (``inbound_event_fail``).
    """
    try:
        inbound_event_process(inbound_event_id=inbound_event_id)
    except EventNotReady as exc:
        if swept:
            event = InboundEvent.objects.filter(pk=inbound_event_id).first()
            if event is not None and event.received_at < timezone.now() - NOT_READY_GIVE_UP:
                inbound_event_reject(inbound_event_id=inbound_event_id, reason=f"gave up: {exc}")
            return
        if self.request.retries >= (self.max_retries or 0):
            inbound_event_reject(inbound_event_id=inbound_event_id, reason=f"gave up: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
    except Exception as exc:  # a poison event: recorded, never silently retried
        # Counted, and dead (with an exception for a person) when the error is unexpected or
        # keeps coming; not retried here: the sweeper sends a transient failure again.
        inbound_event_fail(inbound_event_id=inbound_event_id, error=exc)


@shared_task(name="orchestration.sweep_inbound_events")
def sweep_inbound_events() -> int:
    return inbound_events_sweep()


@shared_task(name="orchestration.poll_systems")
def poll_systems() -> int:
    """Read the changes of every system without webhooks; returns how many events were new."""
    from orchestration.events.polling import systems_poll

    return sum(result.stored + result.recovered for result in systems_poll())


@shared_task(
    name="orchestration.merge_push",
    bind=True,
    max_retries=merge_push_service.MERGE_PUSH_MAX_ATTEMPTS - 1,
)
def merge_push(self: Task, merge_id: int) -> str:
    """Push one merge to the CRM; retry what the CRM could not take now, with backoff."""
    final = self.request.retries >= (self.max_retries or 0)
    try:
        return merge_push_service.merge_push(merge_id=merge_id, final_attempt=final)
    except merge_push_service.MergePushRetry as exc:
        delay = exc.retry_after or min(2 ** (self.request.retries + 1), 60)
        raise self.retry(exc=exc, countdown=delay + random.uniform(0, 1)) from exc


# The workflow engine's tasks, so Celery's autodiscovery registers them.
from orchestration.reconciliation.tasks import reconcile  # noqa: E402, F401
from orchestration.workflows.tasks import execute_step, sweep_steps  # noqa: E402, F401


@shared_task(
    name="orchestration.usage_report_send",
    bind=True,
    max_retries=usage_report_service.USAGE_REPORT_MAX_ATTEMPTS - 1,
)
def usage_report_send(self: Task, report_id: int) -> str:
    """Send one usage period report's delta to billing; retry what billing cannot take now."""
    final = self.request.retries >= (self.max_retries or 0)
    try:
        return usage_report_service.usage_report_send(report_id=report_id, final_attempt=final)
    except usage_report_service.UsageReportRetry as exc:
        delay = exc.retry_after or min(2 ** (self.request.retries + 1), 60)
        raise self.retry(exc=exc, countdown=delay + random.uniform(0, 1)) from exc


@shared_task(name="orchestration.usage_reports_send")
def usage_reports_send(report_ids: list[int]) -> int:
    """One task per period report (an ingest names the reports it made pending at once)."""
    for report_id in report_ids:
        usage_report_send.delay(report_id)
    return len(report_ids)


@shared_task(name="orchestration.usage_reports_sweep")
def usage_reports_sweep() -> int:
    return usage_report_service.usage_reports_sweep()


@shared_task(name="orchestration.retention_purge")
def retention_purge() -> int:
    """Empty the inbound and outbound bodies past retention; returns how many were emptied."""
    from core.audit import Actor
    from orchestration.retention import retention_purge as purge

    run = purge(actor=Actor.system("scheduler"))
    return run.inbound_bodies + run.outbound_bodies
