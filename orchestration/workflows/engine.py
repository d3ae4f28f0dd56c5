"""The workflow engine: ordered, durable, idempotent steps.

- A run's steps are rows created when the run starts; exactly one step is ``queued`` at a
  time and its message goes to the broker only after commit (the row is the truth, the
  message a nudge; ``steps_sweep`` re-sends what a lost message left behind).
- A step's handler is called outside any transaction or lock. Its effect is recorded under
  the step's idempotency key (``StepEffect``), so a redelivered message or a replay skips
  an effect that already happened. Handlers that create something remotely must also look
  it up by that key first, for the case where the remote system committed and the response
  was lost.
- Retryable failures back off with jitter (honouring Retry-After) up to ``max_attempts``
  (a retry that only waits for a system to settle, ``StepRetryable(waiting=True)``, uses
  none of them);
  a permanent failure, or the last retry, raises an exception for a person, holds the order
  and pauses the run. ``step_retry`` re-runs the failed step; when it succeeds the
  exception resolves itself.
- A step may declare its input (``StepDef.payload``): an approved replay's corrected payload
  for that step is written to the records through its ``StepInput.apply`` just before the
  handler runs, so the handler reads the corrected records and history shows the change.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Q
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import DATA_REFUSALS, Refused, reason_require
from core.logging import correlation
from orchestration.connectors.errors import ConnectorError
from orchestration.workflows import observers
from orchestration.workflows.errors import StepFailed, StepRetryable
from orchestration.workflows.models import (
    RunState,
    StepEffect,
    StepRun,
    StepState,
    WorkflowRun,
    WorkflowSignal,
)
from orchestration.workflows.resilience import backoff_delay, circuit_allow, circuit_record

logger = logging.getLogger(__name__)

# A running step holds a lease (``StepRun.lease_expires_at``, ``STEP_LEASE_SECONDS`` long) that
# its worker renews while the handler runs; a lapsed lease means the worker died (SIGKILL, OOM)
# and the sweeper runs the step again. A ``running`` row from before leases existed (no
# ``lease_expires_at``) is judged by this fixed age instead.
RUNNING_LEASE = dt.timedelta(minutes=5)


def step_lease() -> dt.timedelta:
    """How long a claimed step is held without its worker renewing the lease."""
    return dt.timedelta(seconds=settings.STEP_LEASE_SECONDS)


def queued_grace() -> dt.timedelta:
    """How long a ``queued`` step may wait for its message before the sweeper re-sends it."""
    return dt.timedelta(seconds=settings.STEP_QUEUED_GRACE_SECONDS)


class _LeaseKept:
    """Renews a running step's lease from a thread every third of the lease while the step's
    handler runs, so only a dead worker's step lapses, however long a live one takes.

    The renewal is one guarded UPDATE of the step's row (still ``running``, same attempt), on
    the thread's own connection; it stops as soon as the step is no longer ours (finished, or
    swept and claimed again). A renewal that fails (the database blinked, the connection was
    cut) is tried again on a new connection at the next beat: the lease is three beats long."""

    def __init__(self, step: StepRun) -> None:
        self.step_id = step.pk
        self.attempt = step.attempts
        self.lease = step_lease()
        self.every = self.lease.total_seconds() / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-step-{step.pk}", daemon=True
        )

    def __enter__(self) -> _LeaseKept:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    renewed = StepRun.objects.filter(
                        pk=self.step_id, state=StepState.RUNNING, attempts=self.attempt
                    ).update(lease_expires_at=timezone.now() + self.lease)
                except DatabaseError as exc:
                    logger.warning("step %s: lease not renewed: %s", self.step_id, exc)
                    connection.close()  # a lost connection is opened afresh at the next beat
                    continue
                if not renewed:
                    return
        finally:
            connection.close()  # this thread's own connection


# Errors that may pass on their own; any other unexpected error fails the step at once.
TRANSIENT_DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
TRACEBACK_KEPT = 8000


def unexpected_failure(error: BaseException) -> StepFailed:
    """A handler's unexpected error as a permanent failure for integration support, with its
    traceback (the tail, in the exception's context): re-running would fail the same way."""
    trace = "".join(traceback.format_exception(error))[-TRACEBACK_KEPT:]
    return StepFailed(
        f"unexpected error: {type(error).__name__}: {str(error)[:500]}",
        category="internal_error",
        severity="high",
        error_class=type(error).__name__[:40],
        traceback=trace,
    )


@dataclass(frozen=True)
class Done:
    """The step's effect exists; ``external_id`` names it in the target system."""

    external_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepContext:
    run: WorkflowRun
    step: StepRun
    key: str
    signal: dict[str, Any] | None  # the awaited event's payload, for waiting steps
    # An approved replay's corrected payload for this step (None: use the records as they are),
    # already applied to the records by the step's ``StepInput`` before the handler runs.
    corrected: dict[str, Any] | None = None
    # Who approved the correction, for the history rows it writes ("RPL-7 approved by fiona").
    correction_reason: str = ""

    def result_of(self, step_name: str) -> dict[str, Any]:
        """The recorded result of an earlier step of this run."""
        earlier = StepRun.objects.get(run=self.run, name=step_name)
        return {"external_id": earlier.external_id, **earlier.result}


Handler = Callable[[StepContext], Done]


@dataclass(frozen=True)
class StepInput:
    """The data a step works on, as a replay may correct it.

    ``read`` gives the input as the step would use it now (the replay's original payload);
    ``check`` refuses a correction that does not fit (``Refused``, with the reason) and
    returns it normalized; ``apply`` writes an approved correction to the records, through
    audited services, just before the step runs again (``StepFailed`` when it cannot). The
    handler then reads the records as usual, so the correction is durable and visible in
    history, and a later retry uses it too.
    """

    describe: str  # what the payload is, for people: "the quote's customer snapshot"
    read: Callable[[WorkflowRun], dict[str, Any]]
    check: Callable[[WorkflowRun, dict[str, Any]], dict[str, Any]]
    apply: Callable[[StepContext, dict[str, Any]], None]


@dataclass(frozen=True)
class StepDef:
    name: str
    handler: Handler
    system: str = "default"
    max_attempts: int = 5
    waits_for: str = ""  # an event type: the step completes when that event arrives
    has_effect: bool = True  # False for pure checks; they re-run on replay
    payload: StepInput | None = None  # None: a replay cannot correct this step's input


@dataclass(frozen=True)
class CompensationDef:
    """A way to reverse one step's effect in its system (a cancellation, never a deletion).

    It is offered when a run stopped on a failure after that effect happened, and runs only
    through an approved replay. ``execute(target, key)`` calls the system (outside any
    transaction) with the effect's external id and an idempotency key, returns the system's
    status, and raises a connector error when the system refuses or cannot answer."""

    code: str
    label: str
    reverses: str  # the step whose effect it reverses
    system: str
    operation: str  # the call made, for the dry run
    execute: Callable[[str, str], str]
    refused: str  # what a person reads when the system refuses, before the error
    done: str  # what a person reads when it worked: a format of {target} and {status}
    result_key: str  # the replay result's name for the target


@dataclass(frozen=True)
class WorkflowDef:
    kind: str
    steps: list[StepDef]
    compensations: tuple[CompensationDef, ...] = ()


REGISTRY: dict[str, WorkflowDef] = {}


def workflow_register(definition: WorkflowDef) -> WorkflowDef:
    """Make ``definition`` the workflow of its kind (at import of its module); returns it.
    A definition that repeats a step name is a bug (``ValueError``)."""
    names = [step.name for step in definition.steps]
    if len(names) != len(set(names)):
        raise ValueError(f"workflow {definition.kind} repeats a step name")
    REGISTRY[definition.kind] = definition
    return definition


def _step_def(definition: WorkflowDef, name: str) -> StepDef | None:
    """The step ``name`` of ``definition`` (None when the definition has no such step)."""
    return next((s for s in definition.steps if s.name == name), None)


def step_input(*, kind: str, step: str) -> StepInput | None:
    """The correctable input of workflow ``kind``'s step ``step`` (None: not correctable)."""
    definition = REGISTRY.get(kind)
    found = _step_def(definition, step) if definition else None
    return found.payload if found is not None else None


def _definition(run: WorkflowRun) -> WorkflowDef:
    try:
        return REGISTRY[run.kind]
    except KeyError:
        raise LookupError(f"no workflow registered as {run.kind!r}") from None


def step_key(*, subject_id: str, subject_version: int, step: str) -> str:
    """The idempotency key of a step of one subject's version (stable across replays)."""
    return f"{subject_id}:v{subject_version}:{step}"


def _enqueue(step: StepRun, *, countdown: float | None = None) -> None:
    """Send the step's message after commit, on its system's queue."""
    from orchestration.workflows.tasks import execute_step

    step_id, queue = step.pk, step.system

    def send() -> None:
        execute_step.apply_async(args=[step_id], queue=queue, countdown=countdown)

    transaction.on_commit(send)


def _queue(step: StepRun, *, now: dt.datetime) -> None:
    step.state = StepState.QUEUED
    step.enqueued_at = now
    step.next_attempt_at = None
    step.save(update_fields=["state", "enqueued_at", "next_attempt_at"])
    _enqueue(step)


def workflow_start(
    *, kind: str, subject_id: str, actor: Actor, order: Any = None, subject_version: int = 1
) -> WorkflowRun:
    """Create the run and its steps and queue the first one (once per subject+version).

    One transaction; the first step's message is sent after commit. Starting again (or
    losing the race to a concurrent start) returns the existing run. Refuses nothing; an
    unregistered ``kind`` is a bug (``KeyError``)."""
    definition = REGISTRY[kind]
    existing = WorkflowRun.objects.filter(
        kind=kind, subject_id=subject_id, subject_version=subject_version
    ).first()
    if existing is not None:
        return existing
    now = timezone.now()
    try:
        with transaction.atomic(), audit_context(actor=actor, reason=f"start {kind}"):
            run = WorkflowRun.objects.create(
                kind=kind,
                subject_id=subject_id,
                subject_version=subject_version,
                order=order,
                current_step=definition.steps[0].name,
            )
            steps = [
                StepRun.objects.create(
                    run=run,
                    name=step.name,
                    position=position,
                    system=step.system,
                    max_attempts=step.max_attempts,
                    waiting_for=step.waits_for,
                    idempotency_key=step_key(
                        subject_id=subject_id, subject_version=subject_version, step=step.name
                    ),
                )
                for position, step in enumerate(definition.steps)
            ]
            _queue(steps[0], now=now)
    except IntegrityError:  # a concurrent start won; its run is the one
        return WorkflowRun.objects.get(
            kind=kind, subject_id=subject_id, subject_version=subject_version
        )
    return run


def _claim(step_id: int, now: dt.datetime) -> StepRun | None:
    """Move a runnable step to ``running`` (committed) or say there is nothing to do.

    Here and wherever a step is locked, only the step's row is (``of=("self",)``): a lock on
    its run too would be taken in no defined order against ``workflow_signal``, which holds
    the run's key-share lock while it waits for the step (a deadlock, seen under load)."""
    with transaction.atomic():
        step = (
            StepRun.objects.select_for_update(of=("self",))
            .select_related("run")
            .filter(pk=step_id)
            .first()
        )
        if step is None:
            return None
        runnable = step.state == StepState.QUEUED or (
            step.state == StepState.RETRY_SCHEDULED
            and (step.next_attempt_at is None or step.next_attempt_at <= now)
        )
        if not runnable or step.run.state not in (RunState.RUNNING, RunState.WAITING):
            return None
        step.state = StepState.RUNNING
        step.attempts += 1
        step.started_at = now
        step.lease_expires_at = now + step_lease()
        step.save(update_fields=["state", "attempts", "started_at", "lease_expires_at"])
        return step


def step_execute(*, step_id: int) -> str:
    """Run one step (the body of the Celery task). Returns the step's state afterwards.

    The step is claimed (``running``) in its own transaction and its handler runs outside
    any transaction or lock; the outcome (succeeded, retry scheduled, failed, waiting) is
    recorded in another. While the handler runs, the step's lease is renewed (``_LeaseKept``).
    A step that is not runnable now returns "nothing to do"."""
    now = timezone.now()
    step = _claim(step_id, now)
    if step is None:
        return "nothing to do"
    run = step.run
    definition = _definition(run)
    step_def = _step_def(definition, step.name)
    assert step_def is not None  # a run's steps are made from its definition
    with correlation(run.subject_id), _LeaseKept(step):
        return _run_handler(run=run, step=step, definition=definition, step_def=step_def)


def _run_handler(
    *, run: WorkflowRun, step: StepRun, definition: WorkflowDef, step_def: StepDef
) -> str:
    signal: dict[str, Any] | None = None
    if step_def.waits_for:
        found = WorkflowSignal.objects.filter(run=run, event_type=step_def.waits_for).first()
        if found is None:
            return _mark_waiting(step)
        signal = found.payload

    if step_def.has_effect:  # a check has no recorded effect to find: it runs again
        existing = StepEffect.objects.filter(idempotency_key=step.idempotency_key).first()
        if existing is not None:
            return _succeed(
                step=step, outcome=Done(existing.external_id, existing.result), skipped=True
            )

    blocked_for = None if step.system == "default" else circuit_allow(system=step.system)
    if blocked_for is not None:
        return _retry_or_fail(
            step=step,
            definition=definition,
            error=StepRetryable(f"circuit open for {step.system}", retry_after=blocked_for),
            count_attempt=False,
        )
    # Only a step that declares its input can take a correction: the others ask nobody.
    correction = observers.correction_for(step=step) if step_def.payload is not None else None
    context = StepContext(
        run=run,
        step=step,
        key=step.idempotency_key,
        signal=signal,
        corrected=correction.payload if correction is not None else None,
        correction_reason=correction.reason if correction is not None else "",
    )
    try:
        if context.corrected is not None and step_def.payload is not None:
            step_def.payload.apply(context, context.corrected)
        outcome = step_def.handler(context)
    except StepRetryable as exc:
        if step.system != "default" and not exc.waiting:
            circuit_record(system=step.system, ok=False, error=str(exc))
        return _retry_or_fail(
            step=step, definition=definition, error=exc, count_attempt=not exc.waiting
        )
    except StepFailed as exc:
        return _fail(step=step, definition=definition, error=exc)
    except TRANSIENT_DATABASE_ERRORS as exc:  # the database blinked: retried, up to the cap
        error = StepRetryable(f"{type(exc).__name__}: {exc}", error_class=type(exc).__name__)
        return _retry_or_fail(step=step, definition=definition, error=error)
    except Refused as exc:
        if exc.kind in DATA_REFUSALS:
            return _fail(step=step, definition=definition, error=unexpected_failure(exc))
        # a lost race or a transition refused for now: read again and retry, up to the cap
        error = StepRetryable(exc.message, error_class=type(exc).__name__)
        return _retry_or_fail(step=step, definition=definition, error=error)
    except Exception as exc:  # a bug, or an input the code cannot take
        return _fail(step=step, definition=definition, error=unexpected_failure(exc))
    if step.system != "default":
        circuit_record(system=step.system, ok=True)
    return _succeed(step=step, outcome=outcome, skipped=False, record_effect=step_def.has_effect)


def _mark_waiting(step: StepRun) -> str:
    with transaction.atomic():
        locked = (
            StepRun.objects.select_for_update(of=("self",)).select_related("run").get(pk=step.pk)
        )
        if locked.state != StepState.RUNNING:
            return locked.state
        # The signal may have landed between our check and this lock: look once more.
        if WorkflowSignal.objects.filter(run=locked.run, event_type=locked.waiting_for).exists():
            _queue(locked, now=timezone.now())
            return StepState.QUEUED
        locked.state = StepState.WAITING
        locked.save(update_fields=["state"])
        run = locked.run
        if run.state == RunState.RUNNING:
            with audit_context(
                actor=Actor.system("worker"), reason=f"waiting for {locked.waiting_for}"
            ):
                run.wait()
                run.save()
        return StepState.WAITING


def _succeed(*, step: StepRun, outcome: Done, skipped: bool, record_effect: bool = True) -> str:
    now = timezone.now()
    actor = Actor.system("worker")
    with (
        transaction.atomic(),
        audit_context(actor=actor, reason=f"step {step.name} succeeded"),
    ):
        if record_effect and not skipped:
            # One INSERT; an effect already recorded under the key (a redelivery that raced
            # this one) keeps the first, as get_or_create would, without its extra round trips.
            StepEffect.objects.bulk_create(
                [
                    StepEffect(
                        idempotency_key=step.idempotency_key,
                        system=step.system,
                        external_id=outcome.external_id,
                        result=outcome.data,
                    )
                ],
                ignore_conflicts=True,
            )
        locked = StepRun.objects.select_for_update().get(pk=step.pk)
        if locked.state != StepState.RUNNING:
            return locked.state
        locked.state = StepState.SUCCEEDED
        locked.finished_at = now
        locked.external_id = outcome.external_id
        locked.result = outcome.data
        locked.skipped_effect = skipped
        locked.last_error = ""
        locked.save()
        observers.step_succeeded(step=locked, actor=actor)
        run = WorkflowRun.objects.select_for_update().get(pk=locked.run_id)
        following = run.steps.filter(position__gt=locked.position).order_by("position").first()
        if following is None:
            run.current_step = ""
            run.complete()
            run.save()
            observers.run_finished(run=run, ok=True, message="every step succeeded")
            return StepState.SUCCEEDED
        run.current_step = following.name
        if run.state == RunState.WAITING:
            run.resume()
        run.save()
        _queue(following, now=now)
    return StepState.SUCCEEDED


def _retry_or_fail(
    *, step: StepRun, definition: WorkflowDef, error: StepRetryable, count_attempt: bool = True
) -> str:
    attempts = step.attempts if count_attempt else max(step.attempts - 1, 0)
    if attempts >= step.max_attempts:
        failure = StepFailed(
            f"gave up after {attempts} attempts: {error}",
            category="downstream_api",
            severity="high",
            **error.context,
        )
        return _fail(step=step, definition=definition, error=failure)
    delay = backoff_delay(attempt=max(attempts, 1), retry_after=error.retry_after)
    with transaction.atomic():
        locked = StepRun.objects.select_for_update().get(pk=step.pk)
        if locked.state != StepState.RUNNING:
            return locked.state
        locked.state = StepState.RETRY_SCHEDULED
        locked.attempts = attempts
        locked.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
        locked.last_error = str(error)[:2000]
        locked.save(update_fields=["state", "attempts", "next_attempt_at", "last_error"])
        _enqueue(locked, countdown=delay)
    logger.info("step %s retry in %.1fs: %s", step.name, delay, error)
    return StepState.RETRY_SCHEDULED


def _fail(*, step: StepRun, definition: WorkflowDef, error: StepFailed) -> str:
    actor = Actor.system("worker")
    with transaction.atomic(), audit_context(actor=actor, reason=f"step {step.name} failed"):
        locked = (
            StepRun.objects.select_for_update(of=("self",)).select_related("run").get(pk=step.pk)
        )
        if locked.state != StepState.RUNNING:
            return locked.state
        locked.state = StepState.FAILED
        locked.finished_at = timezone.now()
        locked.last_error = str(error)[:2000]
        locked.save(update_fields=["state", "finished_at", "last_error"])
        run = WorkflowRun.objects.select_for_update().get(pk=locked.run_id)
        if run.state in (RunState.RUNNING, RunState.WAITING):
            run.pause()
            run.save()
        observers.step_failed(step=locked, error=error, actor=actor)
        observers.run_finished(
            run=run, ok=False, message=f"step {locked.name} failed: {str(error)[:500]}"
        )
    logger.warning("step %s failed: %s", step.name, error)
    return StepState.FAILED


def _run_key_share(run: WorkflowRun) -> None:
    """Take now the lock the new signal's foreign key takes on its run at commit.

    PostgreSQL checks the (deferred) foreign key at commit with ``FOR KEY SHARE`` on the run.
    Taken there, after this transaction locked the waiting step, it deadlocks with a worker
    that holds the run (``_succeed``, ``FOR UPDATE``) and is about to queue that very step:
    seen when billing's subscription.activated arrived while the step before activation
    finished. Taken first, a worker holding the run makes this wait, never the reverse; a
    worker marking the step waiting updates the run without conflicting with it. SQLite
    serialises writers and has no row locks."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {WorkflowRun._meta.db_table} WHERE id = %s FOR KEY SHARE",  # noqa: S608
            [run.pk],
        )


def workflow_signal(*, run: WorkflowRun, event_type: str, payload: dict[str, Any]) -> bool:
    """Deliver an external event to a run; safe to call twice, early or late.

    One transaction, the waiting step locked; a step already waiting is queued (its message
    sent after commit). Refuses nothing. Returns True the first time this event type
    reaches the run.
    """
    with transaction.atomic():
        _run_key_share(run)
        _, created = WorkflowSignal.objects.get_or_create(
            run=run, event_type=event_type, defaults={"payload": payload}
        )
        # Lock the step that waits for this event whatever its state. Filtering on
        # state=waiting would skip a step a worker is marking waiting right now (its change is
        # not committed yet), and that worker, checking for this uncommitted signal, would not
        # see it either: the step would wait forever. With the lock, one of them sees the other.
        waiting = (
            StepRun.objects.select_for_update()
            .filter(run=run, waiting_for=event_type)
            .order_by("position")
            .first()
        )
        if waiting is not None and waiting.state == StepState.WAITING:
            _queue(waiting, now=timezone.now())
    return created


def workflow_cancel_for_subject(*, subject_id: str, actor: Actor, reason: str) -> int:
    """Cancel the unfinished runs about ``subject_id`` (its order was rejected downstream):
    their steps stop where they are and no message runs them again. Inside the caller's
    transaction, each run locked. Refuses nothing. Returns how many were cancelled."""
    cancelled = 0
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        runs = WorkflowRun.objects.select_for_update().filter(
            subject_id=subject_id, state__in=[RunState.RUNNING, RunState.WAITING, RunState.PAUSED]
        )
        for run in runs.order_by("pk"):
            run.cancel()
            run.current_step = ""
            run.save()
            cancelled += 1
    return cancelled


def step_retry(*, step: StepRun, actor: Actor, reason: str) -> StepRun:
    """Re-run a failed step from where it stopped (an operator's retry): it gets its
    definition's number of attempts again on top of those it used (the count keeps going, so
    a step retried again and again shows how often it ran), its run resumes, and the
    observers hear the step is being retried.

    One transaction, the step then its run locked; the step's message is sent after commit.
    Refuses a blank reason (``ReasonRequired``: "a reason is required to retry") and a step
    that is not failed (``STATE``). Returns the step, queued."""
    reason_require(reason, "a reason is required to retry")
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = (
            StepRun.objects.select_for_update(of=("self",)).select_related("run").get(pk=step.pk)
        )
        if locked.state != StepState.FAILED:
            raise Refused(
                f"step {locked.name} is {locked.state}, only a failed step is retried",
                kind=Refused.Kind.STATE,
            )
        step_def = _step_def(_definition(locked.run), locked.name)
        budget = step_def.max_attempts if step_def is not None else locked.max_attempts
        locked.max_attempts = locked.attempts + budget
        locked.last_error = ""
        locked.finished_at = None
        locked.save(update_fields=["max_attempts", "last_error", "finished_at"])
        _queue(locked, now=timezone.now())
        run = WorkflowRun.objects.select_for_update().get(pk=locked.run_id)
        if run.state == RunState.PAUSED:
            run.resume()
            run.save()
        observers.steps_retrying(steps=[locked], actor=actor)
    return locked


def workflow_replay(
    *, run: WorkflowRun, from_step: StepRun, actor: Actor, reason: str
) -> list[StepRun]:
    """Run ``from_step`` and every step after it again (an approved replay).

    Only a paused or completed run is replayed, never one a worker is moving: another run
    is refused (``STATE``). The steps keep their idempotency keys, so an effect that already
    exists (``StepEffect``) is skipped and checks run again. One transaction, the run then its
    steps locked; the first step's message is sent after commit. Returns the steps that will
    run, in order.
    """
    now = timezone.now()
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked_run = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if locked_run.state not in (RunState.PAUSED, RunState.COMPLETED):
            raise Refused(
                f"{locked_run} is {locked_run.state}; only a paused or completed run is replayed",
                kind=Refused.Kind.STATE,
            )
        steps = list(
            StepRun.objects.select_for_update()
            .filter(run=locked_run, position__gte=from_step.position)
            .order_by("pk")
        )
        steps.sort(key=lambda s: s.position)
        failed = [step for step in steps if step.state == StepState.FAILED]
        for step in steps:
            step.state = StepState.PENDING
            step.attempts = 0
            step.last_error = ""
            step.finished_at = None
            step.next_attempt_at = None
            step.skipped_effect = False
            step.save()
        locked_run.current_step = steps[0].name
        locked_run.replay()
        locked_run.save()
        observers.steps_retrying(steps=failed, actor=actor)
        _queue(steps[0], now=now)
    return steps


def _lease_lapsed(step: StepRun, now: dt.datetime) -> bool:
    """Whether a ``running`` step's worker is gone: its lease ran out unrenewed."""
    if step.state != StepState.RUNNING:
        return False
    if step.lease_expires_at is not None:
        return step.lease_expires_at < now
    return step.started_at is not None and step.started_at < now - RUNNING_LEASE


def steps_sweep(*, now: dt.datetime | None = None) -> int:
    """Re-send steps whose message was lost or whose worker died (their lease lapsed unrenewed),
    each locked in its own transaction, in pk order; sent after commit. Refuses nothing.
    Returns how many."""
    now = now or timezone.now()
    grace = queued_grace()
    stale = (
        Q(state=StepState.QUEUED, enqueued_at__lt=now - grace)
        | Q(state=StepState.RETRY_SCHEDULED, next_attempt_at__lt=now - grace)
        | Q(state=StepState.RUNNING, lease_expires_at__lt=now)
        | Q(
            state=StepState.RUNNING,
            lease_expires_at__isnull=True,
            started_at__lt=now - RUNNING_LEASE,
        )
    )
    candidates = list(StepRun.objects.filter(stale).values_list("pk", flat=True))
    resent = 0
    for pk in sorted(candidates):
        with transaction.atomic():
            step = StepRun.objects.select_for_update().filter(pk=pk).first()
            if step is None:
                continue
            stale_running = _lease_lapsed(step, now)
            if stale_running and step.attempts >= step.max_attempts:
                # Its worker died on each of its attempts (the step kills it, or never ends):
                # running it again would do the same; a person looks at it instead.
                lost = StepFailed(
                    f"gave up after {step.attempts} attempts: the worker running the step was "
                    "lost each time (killed, or past its lease)",
                    category="internal_error",
                    severity="high",
                    error_class="WorkerLost",
                )
                _fail(step=step, definition=_definition(step.run), error=lost)
            elif stale_running or step.state in (StepState.QUEUED, StepState.RETRY_SCHEDULED):
                if stale_running:
                    logger.warning(
                        "step %s (%s) lost its worker (lease lapsed at %s): running it again",
                        step.pk,
                        step.name,
                        step.lease_expires_at,
                    )
                _queue(step, now=now)
                resent += 1
    return resent


# --- Compensations ------------------------------------------------------------------------------


class CompensationFailed(Exception):
    """The system refused the compensation or could not be reached; nothing was recorded."""


@dataclass(frozen=True)
class CompensationOutcome:
    target: str  # the reversed effect's external id
    status: str  # the system's status after the call
    key: str  # the idempotency key it was sent (and recorded) under
    done_before: bool  # an earlier execution already made the call


def compensation_key(*, run: WorkflowRun, code: str) -> str:
    """The idempotency key compensation ``code`` of ``run`` is sent and recorded under."""
    return f"{run.subject_id}:v{run.subject_version}:compensate:{code}"


def compensation_def(*, run: WorkflowRun, code: str) -> CompensationDef | None:
    """The compensation ``code`` declared by ``run``'s workflow (None: not declared)."""
    definition = REGISTRY.get(run.kind)
    if definition is None:
        return None
    return next((c for c in definition.compensations if c.code == code), None)


def compensation_target(*, run: WorkflowRun, code: str) -> str:
    """The external id the compensation reverses ('' when that effect never happened, or
    the compensation is not declared). A read."""
    compensation = compensation_def(run=run, code=code)
    step = (
        StepRun.objects.filter(run=run, name=compensation.reverses).first()
        if compensation is not None
        else None
    )
    if step is None:
        return ""
    effect = StepEffect.objects.filter(idempotency_key=step.idempotency_key).first()
    return effect.external_id if effect is not None else ""


def compensations_available(*, run: WorkflowRun) -> list[CompensationDef]:
    """Compensations offered for a run stopped by a failure (paused) after the effect they
    reverse happened; none for any other run. A read."""
    definition = REGISTRY.get(run.kind)
    if run.state != RunState.PAUSED or definition is None:
        return []
    return [c for c in definition.compensations if compensation_target(run=run, code=c.code)]


def compensation_call(*, run: WorkflowRun, code: str) -> CompensationOutcome:
    """Reverse the effect in its system, once: outside any transaction, under a stored
    idempotency key; a second call finds the recorded outcome and sends nothing. Record the
    outcome with ``compensation_record`` in the transaction that acts on it. Raises
    ``CompensationFailed`` (with the declared ``refused`` text) when the code is not declared
    or the system refuses or cannot be reached; nothing is recorded then."""
    compensation = compensation_def(run=run, code=code)
    if compensation is None:
        raise CompensationFailed(f"{code} is not a compensation of {run.kind} runs")
    key = compensation_key(run=run, code=code)
    target = compensation_target(run=run, code=code)
    effect = StepEffect.objects.filter(idempotency_key=key).first()
    if effect is not None:
        return CompensationOutcome(
            target=target, status=effect.result.get("status", ""), key=key, done_before=True
        )
    try:
        with correlation(run.subject_id):
            status = compensation.execute(target, key)
    except ConnectorError as exc:
        raise CompensationFailed(f"{compensation.refused}: {exc}") from exc
    return CompensationOutcome(target=target, status=status, key=key, done_before=False)


def compensation_record(*, run: WorkflowRun, code: str, outcome: CompensationOutcome) -> None:
    """Remember that the compensation happened (inside the caller's transaction; recording
    it twice keeps the first). Refuses nothing."""
    compensation = compensation_def(run=run, code=code)
    StepEffect.objects.get_or_create(
        idempotency_key=outcome.key,
        defaults={
            "system": compensation.system if compensation is not None else "",
            "external_id": outcome.target,
            "result": {"status": outcome.status},
        },
    )
