"""Orchestration tasks. Thin: take a primary key, call a service."""

from __future__ import annotations

from celery import Task, shared_task

from orchestration.events.hooks import EventNotReady
from orchestration.events.services import inbound_event_process, inbound_event_reject


@shared_task(
    name="orchestration.tasks.process_inbound_event",
    bind=True,
    max_retries=30,
    default_retry_delay=2,
)
def process_inbound_event(self: Task, inbound_event_id: int) -> None:
    """Validate and hand over one received inbound event (a no-op if already handled).

    An event that arrived before what it refers to (a payment before its invoice) stays
    ``received`` and is tried again with growing delays; the last try rejects it, visibly.
    """
    try:
        inbound_event_process(inbound_event_id=inbound_event_id)
    except EventNotReady as exc:
        if self.request.retries >= (self.max_retries or 0):
            inbound_event_reject(inbound_event_id=inbound_event_id, reason=f"gave up: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc


# The workflow engine's tasks, so Celery's autodiscovery registers them.
from orchestration.workflows.tasks import execute_step, sweep_steps  # noqa: E402, F401
