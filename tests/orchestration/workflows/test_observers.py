"""The engine tells its observers what happened, inside the transaction that records it, and
asks them for a step's corrected input; the exception queue is one of them, registered at
start-up, so the engine never imports it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from exceptions.observers import QUEUE
from orchestration.workflows import engine, observers
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import StepRun, WorkflowRun
from tests.exceptions.helpers import FLOW, KIND, drain, planned


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, bool]] = []
        self.correction: observers.Correction | None = None

    def step_failed(self, *, step: StepRun, error: StepFailed, actor: Any) -> None:
        self.seen.append(("failed", step.name, transaction.get_connection().in_atomic_block))

    def step_succeeded(self, *, step: StepRun, actor: Any) -> None:
        self.seen.append(("succeeded", step.name, transaction.get_connection().in_atomic_block))

    def steps_retrying(self, *, steps: list[StepRun], actor: Any) -> None:
        self.seen.append(("retrying", [s.name for s in steps], True))

    def run_finished(self, *, run: WorkflowRun, ok: bool, message: str) -> None:
        self.seen.append(("finished", (ok, message), transaction.get_connection().in_atomic_block))

    def correction_for(self, *, step: StepRun) -> observers.Correction | None:
        return self.correction if step.name == "create_customer" else None


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    engine.workflow_register(FLOW)
    planned.clear()
    found = Recorder()
    observers.observer_register(found)
    yield found
    observers._observers.remove(found)
    planned.clear()
    engine.REGISTRY.pop(KIND, None)


def test_the_exception_queue_is_registered_at_start_up():
    # given / when: Django has started
    # then
    assert QUEUE in observers.observers()


@pytest.mark.django_db(transaction=True)
def test_observers_hear_each_step_and_the_run_inside_the_transaction(recorder, system_actor):
    # given
    run = engine.workflow_start(kind=KIND, subject_id="ORD-000777", actor=system_actor)
    # when
    drain(run)
    # then
    assert recorder.seen == [
        ("succeeded", "check_quote", True),
        ("succeeded", "create_customer", True),
        ("succeeded", "create_subscription", True),
        ("finished", (True, "every step succeeded"), True),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_failure_and_its_retry_reach_the_observers(recorder, system_actor):
    # given
    planned[("ORD-000778", "create_customer")] = [
        StepFailed("customer refused", category="validation")
    ]
    run = engine.workflow_start(kind=KIND, subject_id="ORD-000778", actor=system_actor)
    drain(run)
    failed = StepRun.objects.get(run=run, name="create_customer")
    # when
    engine.step_retry(step=failed, actor=system_actor, reason="fixed in the ERP")
    drain(run)
    # then
    assert recorder.seen == [
        ("succeeded", "check_quote", True),
        ("failed", "create_customer", True),
        ("finished", (False, "step create_customer failed: customer refused"), True),
        ("retrying", ["create_customer"], True),
        ("succeeded", "create_customer", True),
        ("succeeded", "create_subscription", True),
        ("finished", (True, "every step succeeded"), True),
    ]


@pytest.mark.django_db
def test_a_correction_an_observer_gives_reaches_the_step(recorder, system_actor):
    # given
    recorder.correction = observers.Correction(payload={"city": "Leeds"}, reason="RPL-1 ok")
    seen: list[Any] = []
    applied: list[Any] = []

    def handler(ctx: engine.StepContext) -> engine.Done:
        seen.append((ctx.corrected, ctx.correction_reason))
        return engine.Done("X")

    address = engine.StepInput(
        describe="the customer's address",
        read=lambda run: {},
        check=lambda run, payload: payload,
        apply=lambda ctx, payload: applied.append(payload),
    )
    engine.REGISTRY[KIND] = engine.WorkflowDef(
        kind=KIND,
        steps=[engine.StepDef("create_customer", handler, system="erp", payload=address)],
    )
    run = engine.workflow_start(kind=KIND, subject_id="ORD-000779", actor=system_actor)
    # when
    drain(run)
    # then
    assert seen == [({"city": "Leeds"}, "RPL-1 ok")]
    assert applied == [{"city": "Leeds"}]


@pytest.mark.django_db
def test_a_step_that_declares_no_input_is_offered_no_correction(recorder, system_actor):
    # given: a correction a replay could never have approved for this step
    recorder.correction = observers.Correction(payload={"city": "Leeds"}, reason="RPL-1 ok")
    seen: list[Any] = []

    def handler(ctx: engine.StepContext) -> engine.Done:
        seen.append((ctx.corrected, ctx.correction_reason))
        return engine.Done("X")

    engine.REGISTRY[KIND] = engine.WorkflowDef(
        kind=KIND, steps=[engine.StepDef("create_customer", handler, system="erp")]
    )
    run = engine.workflow_start(kind=KIND, subject_id="ORD-000780", actor=system_actor)
    # when
    drain(run)
    # then
    assert seen == [(None, "")]
