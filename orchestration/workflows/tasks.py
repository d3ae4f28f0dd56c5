"""Thin Celery tasks of the workflow engine."""

from __future__ import annotations

from celery import shared_task

from orchestration.workflows import engine


@shared_task(name="orchestration.execute_step")
def execute_step(step_id: int) -> str:
    return engine.step_execute(step_id=step_id)


@shared_task(name="orchestration.sweep_steps")
def sweep_steps() -> int:
    return engine.steps_sweep()
