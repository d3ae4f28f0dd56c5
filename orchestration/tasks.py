"""Orchestration tasks. Thin: take a primary key, call a service."""

from __future__ import annotations

from celery import shared_task

from orchestration.events.services import inbound_event_process


@shared_task(name="orchestration.tasks.process_inbound_event")
def process_inbound_event(inbound_event_id: int) -> None:
    """Validate and hand over one received inbound event (a no-op if already handled)."""
    inbound_event_process(inbound_event_id=inbound_event_id)


# The workflow engine's tasks, so Celery's autodiscovery registers them.
from orchestration.workflows.tasks import execute_step, sweep_steps  # noqa: E402, F401
