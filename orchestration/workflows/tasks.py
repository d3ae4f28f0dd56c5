"""Thin Celery tasks of the workflow engine."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from orchestration.workflows import engine, lifecycle


@shared_task(name="orchestration.execute_step")
def execute_step(step_id: int) -> str:
    return engine.step_execute(step_id=step_id)


@shared_task(name="orchestration.sweep_steps")
def sweep_steps() -> int:
    return engine.steps_sweep()


@shared_task(name="orchestration.contract_versions_due")
def contract_versions_due() -> int:
    """Tell the workflows of contract changes whose date has come that they may go on."""
    return lifecycle.versions_signal_due()


@shared_task(name="orchestration.contracts_auto_renew")
def contracts_auto_renew() -> int:
    """Start the renewal of every auto-renewing contract at its term end."""
    return lifecycle.contracts_auto_renew(lead_days=settings.CONTRACT_RENEWAL_LEAD_DAYS)
