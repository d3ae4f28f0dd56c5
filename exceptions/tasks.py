"""Thin Celery tasks of the exception queue."""

from __future__ import annotations

from celery import shared_task

from exceptions import services


@shared_task(name="exceptions.execute_replay")
def execute_replay(replay_id: int) -> str:
    return services.replay_execute(replay_id=replay_id)


@shared_task(name="exceptions.sweep_replays")
def sweep_replays() -> int:
    return services.replays_sweep()
