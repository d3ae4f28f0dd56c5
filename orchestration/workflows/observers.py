"""What the engine tells the rest of Tandem, and the one thing it asks.

The engine imports nothing above orchestration. Apps that care about a step's outcome (the
exception queue, replays) implement ``WorkflowObserver`` and register it at start-up
(``AppConfig.ready``); the engine calls every registered observer inside the transaction that
records the outcome, so what an observer writes commits or rolls back with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.audit import Actor
    from orchestration.workflows.errors import StepFailed
    from orchestration.workflows.models import StepRun, WorkflowRun


@dataclass(frozen=True)
class Correction:
    """An approved correction of a step's declared input, and why (the history reason)."""

    payload: dict[str, Any]
    reason: str


class WorkflowObserver(Protocol):
    def step_failed(self, *, step: StepRun, error: StepFailed, actor: Actor) -> None:
        """A step failed for good (or exhausted its retries); its run is paused."""

    def step_succeeded(self, *, step: StepRun, actor: Actor) -> None:
        """A step succeeded (possibly on a retry or replay)."""

    def steps_retrying(self, *, steps: list[StepRun], actor: Actor) -> None:
        """A person retries these failed steps, or a replay re-runs them."""

    def run_finished(self, *, run: WorkflowRun, ok: bool, message: str) -> None:
        """The run completed (``ok``) or stopped on a failed step (not ``ok``)."""

    def correction_for(self, *, step: StepRun) -> Correction | None:
        """An approved correction of this step's input, to apply before it runs (or None)."""


_observers: list[WorkflowObserver] = []


def observer_register(observer: WorkflowObserver) -> None:
    """Register ``observer`` once (called from an ``AppConfig.ready``)."""
    if observer not in _observers:
        _observers.append(observer)


def observers() -> list[WorkflowObserver]:
    return list(_observers)


def step_failed(*, step: StepRun, error: StepFailed, actor: Actor) -> None:
    for observer in _observers:
        observer.step_failed(step=step, error=error, actor=actor)


def step_succeeded(*, step: StepRun, actor: Actor) -> None:
    for observer in _observers:
        observer.step_succeeded(step=step, actor=actor)


def steps_retrying(*, steps: list[StepRun], actor: Actor) -> None:
    if steps:
        for observer in _observers:
            observer.steps_retrying(steps=steps, actor=actor)


def run_finished(*, run: WorkflowRun, ok: bool, message: str) -> None:
    for observer in _observers:
        observer.run_finished(run=run, ok=ok, message=message)


def correction_for(*, step: StepRun) -> Correction | None:
    for observer in _observers:
        found = observer.correction_for(step=step)
        if found is not None:
            return found
    return None
