"""The workflow engine, driven step by step in-process (the real-worker runs are in
tests/integration). A test workflow's handlers are plain functions defined here."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

import pytest
from django.utils import timezone

from core.audit import Actor
from core.errors import ReasonRequired, Refused
from core.problems import Category
from exceptions.models import ExceptionState, OperationalException
from exceptions.services import exception_retry
from orchestration.workflows import engine
from orchestration.workflows.errors import StepFailed, StepRetryable
from orchestration.workflows.models import (
    CircuitBreaker,
    CircuitState,
    RunState,
    StepEffect,
    StepRun,
    StepState,
    WorkflowRun,
)
from orchestration.workflows.resilience import backoff_delay
from q2c.models import OrderState
from tests import factories

calls: Counter[str] = Counter()
behaviour: dict[str, list[Any]] = {}


def _handler(name: str):  # type: ignore[no-untyped-def]
    def handle(ctx: engine.StepContext) -> engine.Done:
        calls[name] += 1
        planned = behaviour.get(name) or []
        if planned:
            outcome = planned.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
        return engine.Done(external_id=f"{name}-{ctx.run.subject_id}", data={"n": calls[name]})

    return handle


TEST_FLOW = engine.WorkflowDef(
    kind="test_flow",
    steps=[
        engine.StepDef("create_customer", _handler("create_customer"), system="erp"),
        engine.StepDef(
            "await_acceptance", _handler("await_acceptance"), waits_for="order.accepted",
            has_effect=False,
        ),
        engine.StepDef("create_subscription", _handler("create_subscription"), system="billing",
                       max_attempts=3),
    ],
)  # fmt: skip


@pytest.fixture(autouse=True)
def _registered():  # type: ignore[no-untyped-def]
    engine.workflow_register(TEST_FLOW)
    calls.clear()
    behaviour.clear()
    yield
    engine.REGISTRY.pop("test_flow", None)


def drain(run: WorkflowRun, *, limit: int = 20) -> None:
    """Execute queued (and due) steps until none is runnable, like a worker would."""
    for _ in range(limit):
        step = (
            StepRun.objects.filter(run=run, state__in=[StepState.QUEUED])
            .order_by("position")
            .first()
        )
        if step is None:
            return
        engine.step_execute(step_id=step.pk)


def make_due(step: StepRun) -> None:
    StepRun.objects.filter(pk=step.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
    )


def start(order=None) -> WorkflowRun:  # type: ignore[no-untyped-def]
    order = order or factories.order()
    return engine.workflow_start(
        kind="test_flow", subject_id=order.enterprise_id, order=order, actor=Actor.system("worker")
    )


def retries_run(run: WorkflowRun, step: StepRun, times: int) -> list[dt.timedelta]:
    """Run ``step`` up to ``times`` times, making each scheduled retry due at once (as the
    clock would); returns how far ahead each retry had been scheduled."""
    scheduled = []
    for _ in range(times):
        before = timezone.now()
        drain(run)
        step.refresh_from_db()
        if step.state == StepState.RETRY_SCHEDULED:
            scheduled.append(step.next_attempt_at - before)
            make_due(step)
            StepRun.objects.filter(pk=step.pk).update(state=StepState.QUEUED)
    step.refresh_from_db()
    return scheduled


def states(run: WorkflowRun) -> list[tuple[str, str]]:
    return list(run.steps.order_by("position").values_list("name", "state"))


@pytest.mark.django_db
def test_run_waits_for_the_event_then_completes_once():
    # given
    run = start()
    # when
    drain(run)
    # then
    assert states(run) == [
        ("create_customer", "succeeded"),
        ("await_acceptance", "waiting"),
        ("create_subscription", "pending"),
    ]
    assert WorkflowRun.objects.get(pk=run.pk).state == RunState.WAITING
    # when the event arrives, twice
    assert engine.workflow_signal(run=run, event_type="order.accepted", payload={"so": "SO1"})
    assert not engine.workflow_signal(run=run, event_type="order.accepted", payload={"so": "SO1"})
    drain(run)
    # then
    run.refresh_from_db()
    assert run.state == RunState.COMPLETED
    assert states(run) == [
        ("create_customer", "succeeded"),
        ("await_acceptance", "succeeded"),
        ("create_subscription", "succeeded"),
    ]
    assert calls == Counter(create_customer=1, await_acceptance=1, create_subscription=1)
    assert StepEffect.objects.get(
        idempotency_key=f"{run.subject_id}:v1:create_subscription"
    ).external_id == (f"create_subscription-{run.subject_id}")


@pytest.mark.django_db
def test_an_event_that_arrives_early_is_kept_for_the_step_that_waits_for_it():
    # given
    run = start()
    engine.workflow_signal(run=run, event_type="order.accepted", payload={})
    # when
    drain(run)
    # then
    run.refresh_from_db()
    assert run.state == RunState.COMPLETED


@pytest.mark.django_db
def test_starting_twice_gives_the_same_run():
    # given
    order = factories.order()
    first = start(order)
    # when
    second = start(order)
    # then
    assert first.pk == second.pk
    assert WorkflowRun.objects.count() == 1
    assert StepRun.objects.count() == 3


@pytest.mark.django_db
def test_an_effect_recorded_under_the_key_is_not_repeated():
    # given
    run = start()
    StepEffect.objects.create(
        idempotency_key=f"{run.subject_id}:v1:create_customer", system="erp", external_id="C-42"
    )
    # when
    drain(run)
    # then
    step = run.steps.get(name="create_customer")
    assert (step.state, step.external_id, step.skipped_effect) == ("succeeded", "C-42", True)
    assert calls["create_customer"] == 0


@pytest.mark.django_db
def test_a_redelivered_message_for_a_finished_step_does_nothing():
    # given
    run = start()
    drain(run)
    step = run.steps.get(name="create_customer")
    # when
    outcome = engine.step_execute(step_id=step.pk)
    # then
    assert outcome == "nothing to do"
    assert calls["create_customer"] == 1


@pytest.mark.django_db
def test_retryable_failure_backs_off_at_least_retry_after_then_succeeds():
    # given
    behaviour["create_customer"] = [StepRetryable("503 from erp", retry_after=120)]
    run = start()
    before = timezone.now()
    # when
    drain(run)
    # then
    step = run.steps.get(name="create_customer")
    assert step.state == StepState.RETRY_SCHEDULED
    assert step.attempts == 1
    assert step.last_error == "503 from erp"
    assert step.next_attempt_at >= before + dt.timedelta(seconds=120)
    # when the retry is due
    assert engine.step_execute(step_id=step.pk) == "nothing to do"  # too early: ignored
    make_due(step)
    engine.step_execute(step_id=step.pk)
    # then
    step.refresh_from_db()
    assert (step.state, step.attempts) == ("succeeded", 2)
    assert OperationalException.objects.count() == 0


@pytest.mark.django_db
def test_permanent_failure_raises_an_exception_and_holds_the_order_then_retry_clears_both(
    make_user,
):
    # given
    order = factories.order()
    behaviour["create_customer"] = [
        StepFailed("customer rejected: tax id invalid", category=Category.MASTER_DATA,
                   error_class="ValidationError")
    ]  # fmt: skip
    run = start(order)
    # when
    drain(run)
    # then
    order.refresh_from_db()
    run.refresh_from_db()
    exc = OperationalException.objects.get()
    assert run.state == RunState.PAUSED
    assert order.state == OrderState.ON_HOLD
    assert order.held_from_state == OrderState.RECEIVED
    assert (exc.category, exc.owner_team, exc.state, exc.step, exc.system) == (
        "master_data", "data_steward", "open", "create_customer", "erp",
    )  # fmt: skip
    assert exc.message == "customer rejected: tax id invalid"
    assert exc.order_id == order.pk and exc.correlation_id == order.enterprise_id
    assert exc.sla_due_at == exc.created_at + dt.timedelta(hours=24)
    assert order.history.first().history_change_reason == (
        f"exception EXC-{exc.pk}: customer rejected: tax id invalid"
    )
    # when an operator retries and it works
    support = make_user("support", role="integration_support")
    exc_retrying = exception_retry(
        exception=exc, actor=Actor.person(support), reason="tax id fixed"
    )
    assert exc_retrying.state == ExceptionState.RETRYING
    order.refresh_from_db()
    assert order.state == OrderState.RECEIVED  # released while the step runs again
    assert order.history.first().history_change_reason == f"support retries EXC-{exc.pk}"
    drain(run)
    # then
    exc.refresh_from_db()
    order.refresh_from_db()
    assert (exc.state, exc.resolution_code) == ("resolved", "retry_succeeded")
    assert order.state == OrderState.RECEIVED
    assert calls["create_customer"] == 2


@pytest.mark.django_db
def test_exhausted_retries_become_one_exception():
    # given
    behaviour["create_customer"] = [StepRetryable("timeout")] * 5
    run = start()
    step = run.steps.get(name="create_customer")
    # when
    retries_run(run, step, 5)
    # then
    assert (step.state, step.attempts) == ("failed", 5)
    exc = OperationalException.objects.get()
    assert exc.message == "gave up after 5 attempts: timeout"
    assert exc.category == "downstream_api"


@pytest.mark.django_db
def test_waiting_for_a_system_to_settle_uses_up_no_attempt_and_never_opens_the_circuit(
    settings,
):
    # given: a create's outcome is unknown for longer than five attempts would last
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    waiting = StepRetryable("an earlier create may still commit", retry_after=30, waiting=True)
    behaviour["create_customer"] = [waiting] * 6
    run = start()
    step = run.steps.get(name="create_customer")
    # when
    scheduled = retries_run(run, step, 7)
    # then: the seventh run went ahead and succeeded; no exception, no open circuit
    assert len(scheduled) == 6
    assert all(ahead >= dt.timedelta(seconds=30) for ahead in scheduled)
    assert calls["create_customer"] == 7
    assert (step.state, step.attempts) == ("succeeded", 1)
    assert OperationalException.objects.count() == 0
    assert CircuitBreaker.objects.get(system="erp").state == CircuitState.CLOSED


@pytest.mark.django_db
def test_circuit_opens_after_repeated_failures_and_then_calls_are_not_made(settings):
    # given
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    settings.CIRCUIT_OPEN_SECONDS = 60
    behaviour["create_customer"] = [StepRetryable("500")] * 2
    run = start()
    step = run.steps.get(name="create_customer")
    # when
    for _ in range(2):
        drain(run)
        make_due(step)
        StepRun.objects.filter(pk=step.pk).update(state=StepState.QUEUED)
    drain(run)
    # then
    breaker = CircuitBreaker.objects.get(system="erp")
    step.refresh_from_db()
    assert breaker.state == CircuitState.OPEN
    assert breaker.consecutive_failures == 2
    assert calls["create_customer"] == 2  # the third attempt was not made
    assert step.state == StepState.RETRY_SCHEDULED
    assert step.last_error == "circuit open for erp"
    assert step.attempts == 2  # a call the breaker refused is not an attempt


@pytest.mark.django_db
def test_sweeper_resends_lost_messages_and_steps_of_dead_workers():
    # given
    run = start()
    lost = run.steps.get(name="create_customer")
    old = timezone.now() - dt.timedelta(minutes=10)
    StepRun.objects.filter(pk=lost.pk).update(enqueued_at=old)
    # when
    resent = engine.steps_sweep()
    # then
    assert resent == 1
    lost.refresh_from_db()
    assert lost.state == StepState.QUEUED and lost.enqueued_at > old
    # given a step whose worker died while running
    StepRun.objects.filter(pk=lost.pk).update(state=StepState.RUNNING, started_at=old)
    # when
    assert engine.steps_sweep() == 1
    # then
    lost.refresh_from_db()
    assert lost.state == StepState.QUEUED


def test_backoff_grows_with_jitter_under_a_cap_and_honours_retry_after():
    rng = random.Random(7)
    delays = [backoff_delay(attempt=n, rng=rng) for n in range(1, 12)]
    assert all(2 ** (n - 1) <= d <= 2**n for n, d in enumerate(delays[:6], start=1))
    assert max(delays) <= 300
    assert backoff_delay(attempt=1, retry_after=45, rng=rng) >= 45
    with pytest.raises(ValueError):
        backoff_delay(attempt=0)


@pytest.mark.django_db
def test_exhausted_retries_keep_the_error_class_of_the_last_failure():
    # given
    behaviour["create_customer"] = [StepRetryable("erp 503", error_class="erp.server_error")] * 5
    run = start()
    step = run.steps.get(name="create_customer")
    # when
    retries_run(run, step, 5)
    # then
    exc = OperationalException.objects.get()
    assert (exc.error_class, exc.message) == (
        "erp.server_error",
        "gave up after 5 attempts: erp 503",
    )


# --- What the engine refuses itself ------------------------------------------------------------


def _step_rows(run: WorkflowRun) -> list[tuple[Any, ...]]:
    return list(
        run.steps.order_by("position").values_list("name", "state", "attempts", "last_error")
    )


def _failed_run() -> tuple[WorkflowRun, StepRun]:
    behaviour["create_customer"] = [StepFailed("rejected", category=Category.VALIDATION)]
    run = start()
    drain(run)
    return run, run.steps.get(name="create_customer")


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "  "])
def test_a_step_retry_without_a_reason_is_refused_and_changes_nothing(reason):
    # given
    run, step = _failed_run()
    before = (_step_rows(run), WorkflowRun.objects.get(pk=run.pk).state)
    # when
    with pytest.raises(ReasonRequired) as refused:
        engine.step_retry(step=step, actor=Actor.system("worker"), reason=reason)
    # then
    assert refused.value.message == "a reason is required to retry"
    assert (_step_rows(run), WorkflowRun.objects.get(pk=run.pk).state) == before


@pytest.mark.django_db
def test_a_step_that_has_not_failed_is_not_retried():
    # given
    run, _ = _failed_run()
    waiting = run.steps.get(name="await_acceptance")
    before = (_step_rows(run), WorkflowRun.objects.get(pk=run.pk).state)
    # when
    with pytest.raises(Refused) as refused:
        engine.step_retry(step=waiting, actor=Actor.system("worker"), reason="again")
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.STATE,
        "step await_acceptance is pending, only a failed step is retried",
    )
    assert (_step_rows(run), WorkflowRun.objects.get(pk=run.pk).state) == before


@pytest.mark.django_db
def test_a_run_a_worker_is_moving_is_not_replayed():
    # given: the first step is queued, the run running
    run = start()
    before = (_step_rows(run), WorkflowRun.objects.get(pk=run.pk).state)
    # when
    with pytest.raises(Refused) as refused:
        engine.workflow_replay(
            run=run, from_step=run.steps.get(name="create_customer"),
            actor=Actor.system("worker"), reason="again",
        )  # fmt: skip
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.STATE,
        f"{run} is running; only a paused or completed run is replayed",
    )
    assert (_step_rows(run), WorkflowRun.objects.get(pk=run.pk).state) == before


# --- Poison steps ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unexpected_error_fails_the_step_once_with_its_traceback_for_support():
    # given: a handler with a bug
    behaviour["create_customer"] = [ZeroDivisionError("division by zero")]
    run = start()
    # when
    drain(run)
    # then: failed at once (not left running for the sweeper), the run paused, one exception
    step = run.steps.get(name="create_customer")
    assert (step.state, step.attempts, calls["create_customer"]) == ("failed", 1, 1)
    assert step.last_error == "unexpected error: ZeroDivisionError: division by zero"
    run.refresh_from_db()
    assert run.state == RunState.PAUSED
    exc = OperationalException.objects.get()
    assert (exc.category, exc.owner_team, exc.error_class, exc.step_run_id) == (
        "internal_error", "integration_support", "ZeroDivisionError", step.pk,
    )  # fmt: skip
    assert "Traceback (most recent call last)" in exc.context["traceback"]
    assert "ZeroDivisionError: division by zero" in exc.context["traceback"]
    assert engine.steps_sweep(now=timezone.now() + dt.timedelta(hours=1)) == 0


@pytest.mark.django_db
def test_a_running_step_is_swept_once_its_lease_lapses_and_not_before(settings):
    # given: a step claimed by a worker that then died (nothing renews its lease)
    settings.STEP_LEASE_SECONDS = 7
    run = start()
    step = run.steps.get(name="create_customer")
    claimed = engine._claim(step.pk, timezone.now())
    assert claimed is not None
    # when
    before = engine.steps_sweep(now=claimed.lease_expires_at - dt.timedelta(seconds=1))
    after = engine.steps_sweep(now=claimed.lease_expires_at + dt.timedelta(seconds=1))
    # then
    assert claimed.lease_expires_at - claimed.started_at == dt.timedelta(seconds=7)
    assert (before, after) == (0, 1)
    step.refresh_from_db()
    assert (step.state, step.attempts) == (StepState.QUEUED, 1)
    assert calls["create_customer"] == 0


@pytest.mark.django_db
def test_a_step_whose_worker_dies_on_every_attempt_fails_instead_of_running_forever():
    # given: the step was claimed as often as it may be, and its worker died each time
    run = start()
    step = run.steps.get(name="create_customer")
    old = timezone.now() - dt.timedelta(minutes=10)
    StepRun.objects.filter(pk=step.pk).update(
        state=StepState.RUNNING, started_at=old, attempts=step.max_attempts
    )
    # when
    resent = engine.steps_sweep()
    # then
    assert resent == 0
    step.refresh_from_db()
    assert step.state == StepState.FAILED
    assert step.last_error.startswith("gave up after 5 attempts: the worker running the step")
    exc = OperationalException.objects.get()
    assert (exc.category, exc.error_class) == ("internal_error", "WorkerLost")
    assert calls["create_customer"] == 0


@pytest.mark.django_db
def test_a_lost_race_in_a_handler_is_retried_not_failed():
    # given: the handler loses a race once, then succeeds
    behaviour["create_customer"] = [Refused("changed meanwhile", kind=Refused.Kind.CONFLICT)]
    run = start()
    step = run.steps.get(name="create_customer")
    # when
    retries_run(run, step, 2)
    # then
    assert (step.state, step.attempts) == ("succeeded", 2)
    assert OperationalException.objects.count() == 0
