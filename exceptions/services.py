"""Writes to the exception queue. Each runs in one transaction with the actor and reason."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition

from core.audit import Actor, audit_context
from core.errors import ReasonRequired, TransitionRefused, reason_require
from core.problems import CATEGORY_OWNER, CATEGORY_SLA, Category, Problem
from core.roles import role_of
from core.transitions import transition_apply
from exceptions import selectors
from exceptions.models import (
    OPEN_STATES,
    ExceptionComment,
    ExceptionState,
    OperationalException,
    Replay,
    ReplayKind,
    ReplayState,
)
from orchestration.workflows.engine import (
    CompensationFailed,
    compensation_call,
    compensation_def,
    compensation_record,
    compensations_available,
    step_input,
    workflow_replay,
)
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import RunState, StepRun, WorkflowRun
from q2c.models import ORDER_FINAL, ORDER_PRE_ACTIVE, Order, OrderState


def exception_fingerprint(*, system: str, error_class: str, step: str) -> str:
    """Identical errors (same system, error class and step) share a fingerprint."""
    return hashlib.sha256(f"{system}|{error_class}|{step}".encode()).hexdigest()[:32]


def exception_raise(*, problem: Problem, actor: Actor, reason: str) -> OperationalException:
    """Put a problem raised outside any workflow step on the queue (inside the caller's
    transaction): owned by its category's team unless it names one, due by the category's SLA,
    grouped with identical errors by its fingerprint."""
    if problem.category not in Category.values:
        raise ValueError(f"unknown exception category {problem.category!r}")
    now = timezone.now()
    with audit_context(actor=actor, reason=reason):
        return OperationalException.objects.create(
            category=problem.category,
            severity=problem.severity,
            owner_team=problem.team or CATEGORY_OWNER[problem.category],
            system=problem.system,
            step=problem.step,
            error_class=problem.error_class,
            message=problem.message,
            context=dict(problem.context),
            fingerprint=exception_fingerprint(
                system=problem.system, error_class=problem.error_class, step=problem.step
            ),
            correlation_id=problem.correlation_id,
            created_at=now,
            sla_due_at=now + CATEGORY_SLA[problem.category],
        )


def exception_raise_for_step(
    *, step_run: StepRun, error: StepFailed, actor: Actor
) -> OperationalException:
    """Record a step's permanent failure and hold its order (call inside the engine's
    transaction). One open exception per step run: a failed retry updates it."""
    run = step_run.run
    category = error.category if error.category in Category.values else Category.DOWNSTREAM_API
    context: dict[str, Any] = {
        "workflow": run.kind,
        "step": step_run.name,
        "attempts": step_run.attempts,
        "idempotency_key": step_run.idempotency_key,
        **({"compensation": error.compensation} if error.compensation else {}),
        **{key: value for key, value in error.context.items() if _json_safe(value)},
    }
    error_class = str(error.context.get("error_class") or type(error).__name__)
    message = str(error)
    with audit_context(actor=actor, reason=f"step {step_run.name} failed"):
        existing = (
            OperationalException.objects.select_for_update()
            .filter(step_run=step_run, state__in=OPEN_STATES)
            .first()
        )
        if existing is not None:
            if existing.state == ExceptionState.RETRYING:
                existing.retry_failed(message=message, context=context)
            else:
                existing.message = message
                existing.context = context
            existing.save()
            exc = existing
        else:
            now = timezone.now()
            exc = OperationalException.objects.create(
                category=category,
                severity=error.severity,
                owner_team=CATEGORY_OWNER[category],
                system=step_run.system if step_run.system != "default" else "",
                step=step_run.name,
                error_class=error_class,
                message=message,
                context=context,
                fingerprint=exception_fingerprint(
                    system=step_run.system, error_class=error_class, step=step_run.name
                ),
                correlation_id=run.subject_id,
                order=run.order,
                workflow_run=run,
                step_run=step_run,
                created_at=now,
                sla_due_at=now + CATEGORY_SLA[category],
            )
        order = run.order
        if order is not None:
            order = Order.objects.get(pk=order.pk)  # fresh; see orchestration's _move
            if order.state in ORDER_PRE_ACTIVE:
                transition_apply(
                    order,
                    "hold",
                    actor=actor,
                    reason=f"exception EXC-{exc.pk}: {message[:200]}",
                    reason_text=f"{step_run.name} failed: {message[:500]}",
                )
    return exc


def _json_safe(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


def exceptions_mark_retrying(*, step_run: StepRun, actor: Actor) -> None:
    """An operator retries: the exception is being worked on and its order leaves the hold,
    so the re-run step finds the order where it left it (a new failure holds it again)."""
    for exc in OperationalException.objects.select_for_update().filter(
        step_run=step_run, state=ExceptionState.OPEN
    ):
        exc.start_retry()
        exc.save()
        order = exc.order
        if order is None:
            continue
        order = type(order).objects.get(pk=order.pk)
        others_open = (
            OperationalException.objects.filter(order=order, state=ExceptionState.OPEN)
            .exclude(pk=exc.pk)
            .exists()
        )
        if order.state == OrderState.ON_HOLD and not others_open:
            # The platform releases it on the operator's behalf (they may hold no hold right).
            transition_apply(
                order,
                "release",
                actor=Actor.system("worker"),
                reason=f"{actor.name} retries EXC-{exc.pk}",
            )


def exceptions_resolve_for_step(*, step_run: StepRun, actor: Actor) -> int:
    """A retry succeeded: resolve the step's open exceptions and release its order."""
    resolved = 0
    for exc in OperationalException.objects.select_for_update().filter(
        step_run=step_run, state__in=OPEN_STATES
    ):
        with audit_context(actor=actor, reason="retry succeeded"):
            exc.resolve(code="retry_succeeded", note="the step succeeded on retry")
            exc.save()
        resolved += 1
        order = exc.order
        if order is not None:
            order = Order.objects.get(pk=order.pk)  # fresh; see orchestration's _move
            still_open = OperationalException.objects.filter(
                order=order, state__in=OPEN_STATES
            ).exists()
            if order.state == OrderState.ON_HOLD and not still_open:
                transition_apply(
                    order, "release", actor=actor, reason=f"EXC-{exc.pk} resolved by retry"
                )
    return resolved


def exception_retry(
    *, exception: OperationalException, actor: Actor, reason: str
) -> OperationalException:
    """An operator retries the failed step behind an exception."""
    from orchestration.workflows.engine import step_retry

    if not actor.has_perm("exceptions.retry_exception"):
        raise PermissionDenied(f"{actor.name} may not retry exceptions")
    if not reason.strip():
        raise ReasonRequired("a reason is required to retry")
    if exception.step_run is None:
        raise ValueError(f"{exception} has no step to retry")
    with transaction.atomic():
        step_retry(step=exception.step_run, actor=actor, reason=reason)
    exception.refresh_from_db()
    return exception


def exception_resolve(
    *, exception: OperationalException, code: str, actor: Actor, reason: str
) -> OperationalException:
    if not actor.has_perm("exceptions.resolve_exception"):
        raise PermissionDenied(f"{actor.name} may not resolve exceptions")
    return transition_apply(
        exception, "resolve", actor=actor, reason=reason, code=code, note=reason
    )


def exception_ignore(
    *, exception: OperationalException, actor: Actor, reason: str
) -> OperationalException:
    if not actor.has_perm("exceptions.resolve_exception"):
        raise PermissionDenied(f"{actor.name} may not ignore exceptions")
    return transition_apply(exception, "ignore", actor=actor, reason=reason, note=reason)


# --- Assignment and comments ----------------------------------------------------------------


def exception_assign(
    *, exception: OperationalException, assignee: Any, actor: Actor, reason: str
) -> OperationalException:
    """Give the exception to a person (``None`` returns it to the owner team's queue)."""
    if not actor.has_perm("exceptions.assign_exception"):
        raise PermissionDenied(f"{actor.name} may not assign exceptions")
    reason_require(reason)
    if assignee is not None and not (assignee.is_active and role_of(assignee)):
        raise ValueError(f"{assignee.get_username()} has no role in Tandem and cannot be assigned")
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = OperationalException.objects.select_for_update().get(pk=exception.pk)
        if not locked.is_open:
            raise ValueError(f"EXC-{locked.pk} is {locked.state}; only an open one is assigned")
        locked.assignee = assignee
        locked.save()
    return locked


def exception_comment(
    *, exception: OperationalException, body: str, actor: Actor
) -> ExceptionComment:
    """Add an operator's note to the exception; the note is its own reason."""
    if not actor.has_perm("exceptions.add_exceptioncomment"):
        raise PermissionDenied(f"{actor.name} may not comment on exceptions")
    text = body.strip()
    if not text:
        raise ReasonRequired("a comment cannot be empty")
    with transaction.atomic(), audit_context(actor=actor, reason="comment added"):
        return ExceptionComment.objects.create(exception=exception, author=actor.user, body=text)


# --- Bulk actions ---------------------------------------------------------------------------

BULK_ACTIONS = ("retry", "assign", "resolve")


@dataclass
class BulkItem:
    pk: int
    ok: bool
    message: str


@dataclass
class BulkReport:
    action: str
    items: list[BulkItem] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(1 for item in self.items if item.ok)

    @property
    def failed(self) -> int:
        return sum(1 for item in self.items if not item.ok)


# What a single item may be refused with; the others still run, and the report says why.
BULK_REFUSALS = (TransitionRefused, ValueError, ConcurrentTransition, PermissionDenied)


def exceptions_bulk(
    *,
    action: str,
    pks: list[int],
    actor: Actor,
    reason: str,
    code: str = "",
    assignee: Any = None,
) -> BulkReport:
    """Run one action on each exception (each in its own transaction, in pk order) and report
    what was done and what failed, and why, per exception."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}")
    reason_require(reason)
    report = BulkReport(action=action)
    found = {exc.pk: exc for exc in OperationalException.objects.filter(pk__in=pks)}
    for pk in sorted(set(pks)):
        exception = found.get(pk)
        if exception is None:
            report.items.append(BulkItem(pk, False, "no such exception"))
            continue
        try:
            if action == "retry":
                if not exception.is_open:
                    raise ValueError(f"it is {exception.state}; only an open one is retried")
                exception_retry(exception=exception, actor=actor, reason=reason)
                message = f"step {exception.step} queued to run again"
            elif action == "assign":
                exception_assign(exception=exception, assignee=assignee, actor=actor, reason=reason)
                message = f"assigned to {assignee.get_username() if assignee else 'nobody'}"
            else:
                exception_resolve(exception=exception, code=code, actor=actor, reason=reason)
                message = f"resolved ({code})"
        except BULK_REFUSALS as exc:
            report.items.append(BulkItem(pk, False, str(exc)))
        else:
            report.items.append(BulkItem(pk, True, message))
    return report


# --- Replays --------------------------------------------------------------------------------


def _replay_reason(replay: Replay, actor: Actor, what: str) -> str:
    return f"RPL-{replay.pk} {what} by {actor.name}"


def replay_request(
    *,
    kind: str,
    actor: Actor,
    reason: str,
    step_run: StepRun | None = None,
    workflow_run: WorkflowRun | None = None,
    compensation: str = "",
    corrected_payload: dict[str, Any] | None = None,
) -> Replay:
    """Ask for a replay of a step (and the steps after it), a whole workflow, or a
    compensation. It waits for another person's approval; the dry-run preview is stored.

    ``corrected_payload`` replaces the failed step's declared input (``StepDef.payload``);
    it is refused here (``ValueError``, nothing stored) when the failure is not about data,
    the replay does not start at the failed step, the step declares no input, or the payload
    does not fit that input. Approved, it is written to the records just before the step
    runs again."""
    if not actor.has_perm("exceptions.request_replay"):
        raise PermissionDenied(f"{actor.name} may not request replays")
    reason_require(reason)
    if kind not in ReplayKind.values:
        raise ValueError(f"unknown replay kind {kind!r}")
    if kind == ReplayKind.WORKFLOW:
        if workflow_run is None:
            raise ValueError("choose the workflow run to replay")
        step_run = StepRun.objects.filter(run=workflow_run).order_by("position").first()
        if step_run is None:
            raise ValueError(f"{workflow_run} has no steps")
    elif step_run is None:
        raise ValueError("choose the step to replay or compensate")
    run = step_run.run
    exception = (
        OperationalException.objects.filter(workflow_run=run, state__in=OPEN_STATES)
        .order_by("-created_at", "-pk")
        .first()
    )
    if kind == ReplayKind.COMPENSATION:
        if compensation not in {c.code for c in compensations_available(run=run)}:
            raise ValueError(f"{compensation or 'that compensation'} is not available for {run}")
        if corrected_payload is not None:
            raise ValueError("a compensation takes no corrected payload")
    else:
        compensation = ""
        if run.state not in (RunState.PAUSED, RunState.COMPLETED):
            raise ValueError(f"{run} is {run.state}; only a paused or completed run is replayed")
    original = selectors.replay_original_payload(step_run=step_run, exception=exception)
    if corrected_payload is not None:
        if not isinstance(corrected_payload, dict):
            raise ValueError("the corrected payload must be a JSON object")
        refusal = selectors.replay_correction_refusal(
            kind=kind, step_run=step_run, exception=exception
        )
        if refusal:
            raise ValueError(refusal)
        declared = step_input(kind=run.kind, step=step_run.name)
        assert declared is not None  # the refusal above says so otherwise
        corrected_payload = declared.check(run, corrected_payload)
    preview = selectors.replay_preview(
        kind=kind,
        step_run=step_run,
        compensation=compensation,
        payload=corrected_payload if corrected_payload is not None else original,
        corrected=corrected_payload is not None,
    )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        WorkflowRun.objects.select_for_update().get(pk=run.pk)  # one request at a time per run
        pending = Replay.objects.filter(
            workflow_run=run,
            state__in=[ReplayState.REQUESTED, ReplayState.APPROVED, ReplayState.RUNNING],
        ).first()
        if pending is not None:
            raise ValueError(f"{pending} for this run is still {pending.state}")
        return Replay.objects.create(
            kind=kind,
            exception=exception,
            workflow_run=run,
            step_run=step_run,
            compensation=compensation,
            reason=reason.strip(),
            original_payload=original,
            corrected_payload=corrected_payload,
            preview=preview,
            requested_by=actor.user,
        )


def _decide(*, replay: Replay, actor: Actor, reason: str, what: str) -> Replay:
    if not actor.has_perm("exceptions.approve_replay"):
        raise PermissionDenied(f"{actor.name} may not {what} replays")
    reason_require(reason)
    if replay.requested_by_id == actor.user.pk:
        raise PermissionDenied(
            f"{actor.name} requested {replay} and cannot {what} it: another person must"
        )
    return transition_apply(replay, what, actor=actor, reason=reason, by=actor.user, note=reason)


def replay_approve(*, replay: Replay, actor: Actor, reason: str) -> Replay:
    """A different person approves; a worker executes the replay after commit. Of two
    concurrent approvals one wins and the other fails with ``ConcurrentTransition``."""
    with transaction.atomic():
        approved = _decide(replay=replay, actor=actor, reason=reason, what="approve")
        _enqueue_execution(approved)
    return approved


def replay_reject(*, replay: Replay, actor: Actor, reason: str) -> Replay:
    return _decide(replay=replay, actor=actor, reason=reason, what="reject")


def replay_execute(*, replay_id: int) -> str:
    """Execute an approved replay (the body of the Celery task); safe to run twice."""
    worker = Actor.system("worker")
    with transaction.atomic():
        replay = Replay.objects.select_for_update().select_related("workflow_run").get(pk=replay_id)
        if replay.state != ReplayState.APPROVED:
            return "nothing to do"
        with audit_context(actor=worker, reason=f"{replay} approved; executing"):
            replay.start()
            replay.save()
        if replay.kind != ReplayKind.COMPENSATION:
            assert replay.step_run is not None
            try:
                steps = workflow_replay(
                    run=replay.workflow_run,
                    from_step=replay.step_run,
                    actor=worker,
                    reason=f"{replay}: {replay.reason}"[:500],
                )
            except ValueError as exc:
                with audit_context(actor=worker, reason=f"{replay} could not start"):
                    replay.fail(message=str(exc), result={})
                    replay.save()
                return ReplayState.FAILED
            with audit_context(actor=worker, reason=f"{replay} started {len(steps)} steps"):
                replay.result = {"step_runs": [step.pk for step in steps]}
                replay.save()
            return ReplayState.RUNNING
    return _compensate(replay=replay, actor=worker)


def _compensate(*, replay: Replay, actor: Actor) -> str:
    """Reverse an effect in the target system (never a deletion) through the workflow's
    declared compensation, then cancel what Tandem holds for it: the run's open exceptions
    are resolved, the run and its order cancelled. The call is made outside any transaction,
    under a stored idempotency key, so executing twice calls the system once."""
    run = replay.workflow_run
    code = replay.compensation
    try:
        outcome = compensation_call(run=run, code=code)
    except CompensationFailed as exc:
        with transaction.atomic(), audit_context(actor=actor, reason=f"{replay} failed"):
            locked = Replay.objects.select_for_update().get(pk=replay.pk)
            locked.fail(message=str(exc), result={})
            locked.save()
        return ReplayState.FAILED
    declared = compensation_def(run=run, code=code)
    assert declared is not None  # compensation_call refuses an undeclared one
    with transaction.atomic(), audit_context(actor=actor, reason=f"{replay} compensated"):
        compensation_record(run=run, code=code, outcome=outcome)
        locked = Replay.objects.select_for_update().get(pk=replay.pk)
        why = f"{replay} approved by {locked.decided_by}: {locked.reason}"[:500]
        for open_exc in (
            OperationalException.objects.select_for_update()
            .filter(workflow_run=run, state__in=OPEN_STATES)
            .order_by("pk")
        ):
            transition_apply(
                open_exc, "resolve", actor=actor, reason=why, code="compensated", note=why
            )
        locked_run = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if locked_run.state in (RunState.RUNNING, RunState.WAITING, RunState.PAUSED):
            transition_apply(locked_run, "cancel", actor=actor, reason=why)
        order = Order.objects.get(pk=run.order_id) if run.order_id else None
        if order is not None and order.state not in ORDER_FINAL:
            transition_apply(order, "cancel", actor=actor, reason=why, reason_text=why)
        locked.succeed(
            message=declared.done.format(target=outcome.target, status=outcome.status),
            result={
                declared.result_key: outcome.target,
                "status": outcome.status,
                "idempotency_key": outcome.key,
            },
        )
        locked.save()
    return ReplayState.SUCCEEDED


def replays_finish_for_run(*, run: WorkflowRun, ok: bool, message: str) -> None:
    """The engine reports a replayed run's end (inside its transaction): record the result
    and the steps that ran on the running replay, if there is one."""
    for replay in Replay.objects.select_for_update().filter(
        workflow_run=run, state=ReplayState.RUNNING
    ):
        pks = list(replay.result.get("step_runs") or [])
        steps = {
            step.pk: {"pk": step.pk, "name": step.name, "state": step.state,
                      "skipped_effect": step.skipped_effect}
            for step in StepRun.objects.filter(pk__in=pks)
        }  # fmt: skip
        result = {"step_runs": pks, "steps": [steps[pk] for pk in pks if pk in steps]}
        with audit_context(actor=Actor.system("worker"), reason=f"{replay} finished: {message}"):
            if ok:
                replay.succeed(message=message, result=result)
            else:
                replay.fail(message=message, result=result)
            replay.save()


# An approved replay whose execution message has not started it within this long lost it.
APPROVED_GRACE = dt.timedelta(minutes=2)


def replays_sweep(*, now: dt.datetime | None = None) -> int:
    """Re-send the execution of approved replays whose message was lost (the row is the
    truth; executing twice is harmless). Returns how many were re-sent."""
    now = now or timezone.now()
    stale = Replay.objects.filter(
        state=ReplayState.APPROVED, decided_at__lt=now - APPROVED_GRACE
    ).order_by("pk")
    resent = 0
    for replay in stale:
        _enqueue_execution(replay)
        resent += 1
    return resent


def _enqueue_execution(replay: Replay) -> None:
    """Send the replay's execution after commit; a compensation goes to its system's queue."""
    from exceptions.tasks import execute_replay

    queue = "erp" if replay.kind == ReplayKind.COMPENSATION else "default"
    replay_id = replay.pk
    transaction.on_commit(lambda: execute_replay.apply_async(args=[replay_id], queue=queue))
