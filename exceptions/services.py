"""Writes to the exception queue and replays. Each runs in one transaction with the actor and
reason, and refuses with ``core.errors.Refused`` (nothing changed; the message is what the
operator reads). A missing permission is ``PermissionDenied``."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import Refused, reason_require
from core.params import id_from
from core.problems import CATEGORY_OWNER, CATEGORY_SLA, Category, Problem
from core.roles import role_of
from core.transitions import transition_apply
from exceptions import selectors
from exceptions.models import (
    ADMIN_RESOLUTION_CODE,
    GONE_RESOLUTION_CODE,
    OPEN_STATES,
    RESOLUTION_CODES,
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
    step_retry,
    workflow_replay,
    workflow_start,
)
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import RunState, StepRun, StepState, WorkflowRun
from orchestration.workflows.quote_to_cash import KIND as QUOTE_TO_CASH
from q2c import services as q2c_services
from q2c.models import ORDER_FINAL, ORDER_PRE_ACTIVE, Order, OrderState


def exception_fingerprint(*, system: str, error_class: str, step: str) -> str:
    """Identical errors (same system, error class and step) share a fingerprint. Pure."""
    return hashlib.sha256(f"{system}|{error_class}|{step}".encode()).hexdigest()[:32]


def exception_raise(*, problem: Problem, actor: Actor, reason: str) -> OperationalException:
    """Put a problem raised outside any workflow step on the queue (inside the caller's
    transaction): owned by its category's team unless it names one, due by the category's SLA,
    grouped with identical errors by its fingerprint. Refuses nothing: an unknown category is
    a bug (``ValueError``). Returns the new exception."""
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


def exception_close_gone(*, reference: str, actor: Actor, reason: str) -> bool:
    """Resolve the open exception ``reference`` (``EXC-n``) because what it reported went
    away (code ``GONE_RESOLUTION_CODE``, the reason as its note), inside the caller's
    transaction. False for a reference that names no open exception; refuses nothing."""
    pk = id_from(reference.removeprefix("EXC-")) if reference.startswith("EXC-") else None
    if pk is None:
        return False
    exc = OperationalException.objects.filter(pk=pk, state__in=OPEN_STATES).first()
    if exc is None:
        return False
    transition_apply(
        exc, "resolve", actor=actor, reason=reason, code=GONE_RESOLUTION_CODE, note=reason
    )
    return True


def exception_raise_for_step(
    *, step_run: StepRun, error: StepFailed, actor: Actor
) -> OperationalException:
    """Record a step's permanent failure and hold its order (call inside the engine's
    transaction, the step locked). One open exception per step run: a failed retry updates
    it (and it is open again). Refuses nothing. Returns the exception."""
    context = _step_failure_context(step_run=step_run, error=error)
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
            exc = _exception_create_for_step(
                step_run=step_run, error=error, message=message, context=context
            )
        # A retry of the same failure failed again: the order's clock keeps running.
        _order_hold_for(
            exc, step_run=step_run, message=message, actor=actor, keep_clock=existing is not None
        )
    return exc


def _step_failure_context(*, step_run: StepRun, error: StepFailed) -> dict[str, Any]:
    """What the operator sees about the failure: where, how often, under which key, and the
    error's own context (what is JSON)."""
    return {
        "workflow": step_run.run.kind,
        "step": step_run.name,
        "attempts": step_run.attempts,
        "idempotency_key": step_run.idempotency_key,
        **({"compensation": error.compensation} if error.compensation else {}),
        **{key: value for key, value in error.context.items() if _json_safe(value)},
    }


def _exception_create_for_step(
    *, step_run: StepRun, error: StepFailed, message: str, context: dict[str, Any]
) -> OperationalException:
    run = step_run.run
    category = error.category if error.category in Category.values else Category.DOWNSTREAM_API
    error_class = str(error.context.get("error_class") or type(error).__name__)
    now = timezone.now()
    return OperationalException.objects.create(
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


def _order_hold_for(
    exc: OperationalException,
    *,
    step_run: StepRun,
    message: str,
    actor: Actor,
    keep_clock: bool = False,
) -> None:
    """Hold the run's order while it has not reached ERP acceptance (nothing after it is
    held: the effects exist downstream)."""
    order = step_run.run.order
    if order is None:
        return
    order = Order.objects.get(pk=order.pk)  # fresh; see orchestration's _move
    if order.state in ORDER_PRE_ACTIVE:
        transition_apply(
            order,
            "hold",
            actor=actor,
            reason=f"exception EXC-{exc.pk}: {message[:200]}",
            reason_text=f"{step_run.name} failed: {message[:500]}",
            keep_clock=keep_clock,
        )


def _json_safe(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


def exceptions_mark_retrying(*, step_run: StepRun, actor: Actor) -> None:
    """An operator retries: the exception is being worked on and its order leaves the hold,
    so the re-run step finds the order where it left it (a new failure holds it again).

    Inside the caller's transaction (the engine's ``step_retry``); the step's open exceptions
    are locked. The platform releases the order on the operator's behalf. Refuses nothing."""
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
                keep_clock=True,
            )


def exceptions_resolve_for_step(*, step_run: StepRun, actor: Actor) -> int:
    """A retry succeeded: resolve the step's open exceptions ("retry_succeeded") and release
    its order once no exception holds it. Inside the caller's transaction (the engine's),
    the exceptions locked. Refuses nothing. Returns how many were resolved."""
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


RETRY_REASON_REQUIRED = "a reason is required to retry"


def exception_retry(
    *, exception: OperationalException, actor: Actor, reason: str
) -> OperationalException:
    """An operator retries the failed step behind an open exception: the exception moves to
    retrying, its order leaves the hold, and the step runs again (the exception resolves
    itself when the step succeeds).

    One transaction; the step, the exception, then the run are locked (the engine's order).
    Refuses an exception that is not open ("EXC-n is ignored; only an open exception is
    retried", ``STATE``), a blank reason (``ReasonRequired``), an exception without a step
    and a step that is no longer failed (``STATE``); raises ``PermissionDenied`` without
    ``exceptions.retry_exception``. Returns the exception, refreshed after commit."""
    if not actor.has_perm("exceptions.retry_exception"):
        raise PermissionDenied(f"{actor.name} may not retry exceptions")
    with transaction.atomic():
        if exception.step_run_id is not None:
            StepRun.objects.select_for_update().get(pk=exception.step_run_id)
        locked = OperationalException.objects.select_for_update().get(pk=exception.pk)
        if not locked.is_open:
            raise Refused(
                f"EXC-{locked.pk} is {locked.state}; only an open exception is retried",
                kind=Refused.Kind.STATE,
            )
        reason_require(reason, RETRY_REASON_REQUIRED)
        if locked.step_run is None:
            raise Refused(f"{locked} has no step to retry", kind=Refused.Kind.STATE)
        step_retry(step=locked.step_run, actor=actor, reason=reason)
    exception.refresh_from_db()
    return exception


def step_retry_for_operator(*, step: StepRun, actor: Actor, reason: str) -> StepRun:
    """An operator retries a failed step (from the deal's timeline): through its open
    exception when it has one (``exception_retry``: the exception moves to retrying and the
    order leaves its hold), else through the engine (``step_retry``).

    Refuses a blank reason (``ReasonRequired``) and a step that is not failed (``STATE``);
    raises ``PermissionDenied`` without ``exceptions.retry_exception``. Returns the step,
    refreshed after commit."""
    if not actor.has_perm("exceptions.retry_exception"):
        raise PermissionDenied(f"{actor.name} may not retry steps")
    exception = (
        OperationalException.objects.filter(step_run=step, state=ExceptionState.OPEN)
        .order_by("pk")
        .first()
    )
    if exception is not None:
        exception_retry(exception=exception, actor=actor, reason=reason)
    else:
        step_retry(step=step, actor=actor, reason=reason)
    step.refresh_from_db()
    return step


@dataclass(frozen=True)
class Release:
    """What releasing a held order set moving."""

    order: Order
    started: WorkflowRun | None = None  # no workflow had run for it: quote to cash started
    paused_at: StepRun | None = None  # its run waits on this failed step until it is retried


def order_release_for_operator(*, order: Order, actor: Actor, reason: str) -> Release:
    """An operator releases a held order so that something moves it again: an order no
    workflow has run for (a seeded or imported order) gets quote to cash started, in the same
    transaction as the release (its steps find what already exists and leave an order past a
    state alone); an order whose run is paused on a failed step is released and the step is
    named, since only a retry of it moves the order.

    Refuses what ``order_release`` refuses (not on hold, blank reason, a lost race); raises
    ``PermissionDenied`` without ``q2c.hold_order``. Returns what was set moving."""
    with transaction.atomic():
        released = q2c_services.order_release(order=order, actor=actor, reason=reason)
        if not WorkflowRun.objects.filter(order=released).exists():
            run = workflow_start(
                kind=QUOTE_TO_CASH, subject_id=released.enterprise_id, order=released, actor=actor
            )
            return Release(order=released, started=run)
    paused_at = (
        StepRun.objects.filter(
            run__order=released, run__state=RunState.PAUSED, state=StepState.FAILED
        )
        .order_by("-pk")
        .first()
    )
    return Release(order=released, paused_at=paused_at)


def exception_resolve(
    *, exception: OperationalException, code: str, actor: Actor, reason: str
) -> OperationalException:
    """Close an open exception as resolved, with one of ``RESOLUTION_CODES`` and the
    operator's reason (kept as its note).

    One transaction (``transition_apply``). Refuses a code not in ``RESOLUTION_CODES``
    ("choose a resolution code to resolve EXC-n", ``INVALID``), a blank reason
    (``ReasonRequired``), an exception that is not open (``TransitionRefused``) and a lost
    race (``CONFLICT``); raises ``PermissionDenied`` without ``exceptions.resolve_exception``.
    Returns the exception, resolved."""
    if not actor.has_perm("exceptions.resolve_exception"):
        raise PermissionDenied(f"{actor.name} may not resolve exceptions")
    if code not in RESOLUTION_CODES:
        raise Refused(
            f"choose a resolution code to resolve EXC-{exception.pk}", kind=Refused.Kind.INVALID
        )
    return _resolve(exception=exception, code=code, actor=actor, reason=reason)


def exception_resolve_in_admin(
    *, exception: OperationalException, actor: Actor, reason: str
) -> OperationalException:
    """``exception_resolve`` from the admin's action, with the code that says so
    (``ADMIN_RESOLUTION_CODE``); the same refusals otherwise."""
    if not actor.has_perm("exceptions.resolve_exception"):
        raise PermissionDenied(f"{actor.name} may not resolve exceptions")
    return _resolve(exception=exception, code=ADMIN_RESOLUTION_CODE, actor=actor, reason=reason)


def _resolve(
    *, exception: OperationalException, code: str, actor: Actor, reason: str
) -> OperationalException:
    return transition_apply(
        exception, "resolve", actor=actor, reason=reason, code=code, note=reason
    )


def exception_ignore(
    *, exception: OperationalException, actor: Actor, reason: str
) -> OperationalException:
    """Close an open exception without fixing anything; the reason is its note.

    One transaction (``transition_apply``). Refuses a blank reason (``ReasonRequired``), an
    exception that is not open (``TransitionRefused``) and a lost race (``CONFLICT``); raises
    ``PermissionDenied`` without ``exceptions.resolve_exception``. Returns it, ignored."""
    if not actor.has_perm("exceptions.resolve_exception"):
        raise PermissionDenied(f"{actor.name} may not ignore exceptions")
    return transition_apply(exception, "ignore", actor=actor, reason=reason, note=reason)


# --- Assignment and comments ----------------------------------------------------------------


def exception_assign(
    *, exception: OperationalException, assignee: Any, actor: Actor, reason: str
) -> OperationalException:
    """Give the exception to a person (``None`` returns it to the owner team's queue).

    One transaction, the exception locked. Refuses a blank reason (``ReasonRequired``), an
    assignee who is inactive or has no role in Tandem (``INVALID``) and an exception that is
    not open (``STATE``); raises ``PermissionDenied`` without ``exceptions.assign_exception``.
    Returns the exception as saved."""
    if not actor.has_perm("exceptions.assign_exception"):
        raise PermissionDenied(f"{actor.name} may not assign exceptions")
    reason_require(reason)
    if assignee is not None and not (assignee.is_active and role_of(assignee)):
        raise Refused(
            f"{assignee.get_username()} has no role in Tandem and cannot be assigned",
            kind=Refused.Kind.INVALID,
        )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = OperationalException.objects.select_for_update().get(pk=exception.pk)
        if not locked.is_open:
            raise Refused(
                f"EXC-{locked.pk} is {locked.state}; only an open one is assigned",
                kind=Refused.Kind.STATE,
            )
        locked.assignee = assignee
        locked.save()
    return locked


COMMENT_MAX_CHARS = 10_000


def exception_comment(
    *, exception: OperationalException, body: str, actor: Actor
) -> ExceptionComment:
    """Add an operator's note to the exception (in any state); the note is its own reason.

    One transaction. Refuses an empty note (``ReasonRequired``: "a comment cannot be
    empty") and one longer than ``COMMENT_MAX_CHARS``; raises ``PermissionDenied`` without
    ``exceptions.add_exceptioncomment``. Returns the comment."""
    if not actor.has_perm("exceptions.add_exceptioncomment"):
        raise PermissionDenied(f"{actor.name} may not comment on exceptions")
    text = body.strip()
    reason_require(text, "a comment cannot be empty")
    if len(text) > COMMENT_MAX_CHARS:
        raise Refused(
            f"a comment is at most {COMMENT_MAX_CHARS} characters (this one has {len(text)})",
            kind=Refused.Kind.INVALID,
        )
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
    what was done and what failed, and why, per exception.

    Refuses the whole batch, to resolve, without a code from ``RESOLUTION_CODES`` ("choose a
    resolution code", ``INVALID``), or for a blank reason (``ReasonRequired``). An exception the
    action refuses (``Refused``) or that does not exist is reported and the others still run;
    anything else (``PermissionDenied``, a bug) propagates. An unknown ``action`` is a bug
    (``ValueError``)."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}")
    if action == "resolve" and code not in RESOLUTION_CODES:
        raise Refused("choose a resolution code", kind=Refused.Kind.INVALID)
    reason_require(reason)
    report = BulkReport(action=action)
    found = {exc.pk: exc for exc in OperationalException.objects.filter(pk__in=pks)}
    for pk in sorted(set(pks)):
        exception = found.get(pk)
        if exception is None:
            report.items.append(BulkItem(pk, False, "no such exception"))
            continue
        try:
            message = _bulk_one(
                action, exception=exception, actor=actor, reason=reason, code=code,
                assignee=assignee,
            )  # fmt: skip
        except Refused as exc:
            report.items.append(BulkItem(pk, False, exc.message))
        else:
            report.items.append(BulkItem(pk, True, message))
    return report


def _bulk_one(
    action: str,
    *,
    exception: OperationalException,
    actor: Actor,
    reason: str,
    code: str,
    assignee: Any,
) -> str:
    """Run ``action`` on one exception; returns what was done, for the report."""
    if action == "retry":
        exception_retry(exception=exception, actor=actor, reason=reason)
        return f"step {exception.step} queued to run again"
    if action == "assign":
        exception_assign(exception=exception, assignee=assignee, actor=actor, reason=reason)
        return f"assigned to {assignee.get_username() if assignee else 'nobody'}"
    exception_resolve(exception=exception, code=code, actor=actor, reason=reason)
    return f"resolved ({code})"


# --- Replays --------------------------------------------------------------------------------


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
    it is refused here (``INVALID``, nothing stored) when the failure is not about data,
    the replay does not start at the failed step, the step declares no input, or the payload
    does not fit that input. Approved, it is written to the records just before the step
    runs again.

    Also refuses a blank reason (``ReasonRequired``), an unknown kind, a missing step or run
    and a compensation not offered for the run (``INVALID``), a run that is not paused or
    completed (``STATE``) and a run with a replay still requested, approved or running
    (``DUPLICATE``); raises ``PermissionDenied`` without ``exceptions.request_replay``. One
    transaction, the run locked (one request at a time per run). Returns the replay,
    requested."""
    if not actor.has_perm("exceptions.request_replay"):
        raise PermissionDenied(f"{actor.name} may not request replays")
    reason_require(reason)
    step_run = _replay_start(kind=kind, step_run=step_run, workflow_run=workflow_run)
    run = step_run.run
    exception = selectors.run_open_exception(run=run)
    compensation = _replay_kind_check(
        kind=kind, run=run, compensation=compensation, corrected=corrected_payload is not None
    )
    original = selectors.replay_original_payload(step_run=step_run, exception=exception)
    if corrected_payload is not None:
        corrected_payload = _replay_correction_check(
            kind=kind, step_run=step_run, exception=exception, payload=corrected_payload
        )
    preview = selectors.replay_preview(
        kind=kind,
        step_run=step_run,
        compensation=compensation,
        payload=corrected_payload if corrected_payload is not None else original,
        corrected=corrected_payload is not None,
    )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        _replay_none_pending(run)
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


def _replay_none_pending(run: WorkflowRun) -> None:
    """Lock the run (one request at a time per run) and refuse a second replay while one is
    requested, approved or running (``DUPLICATE``)."""
    WorkflowRun.objects.select_for_update().get(pk=run.pk)
    pending = Replay.objects.filter(
        workflow_run=run,
        state__in=[ReplayState.REQUESTED, ReplayState.APPROVED, ReplayState.RUNNING],
    ).first()
    if pending is not None:
        raise Refused(
            f"{pending} for this run is still {pending.state}", kind=Refused.Kind.DUPLICATE
        )


def _replay_start(
    *, kind: str, step_run: StepRun | None, workflow_run: WorkflowRun | None
) -> StepRun:
    """The step a replay of ``kind`` starts at: the one named, or a workflow's first."""
    if kind not in ReplayKind.values:
        raise Refused(f"unknown replay kind {kind!r}", kind=Refused.Kind.INVALID)
    if kind == ReplayKind.WORKFLOW:
        if workflow_run is None:
            raise Refused("choose the workflow run to replay", kind=Refused.Kind.INVALID)
        first = StepRun.objects.filter(run=workflow_run).order_by("position").first()
        if first is None:
            raise Refused(f"{workflow_run} has no steps", kind=Refused.Kind.STATE)
        return first
    if step_run is None:
        raise Refused("choose the step to replay or compensate", kind=Refused.Kind.INVALID)
    return step_run


def _replay_kind_check(*, kind: str, run: WorkflowRun, compensation: str, corrected: bool) -> str:
    """Refuse what the kind does not allow; returns the compensation code ('' but for a
    compensation)."""
    if kind == ReplayKind.COMPENSATION:
        if compensation not in {c.code for c in compensations_available(run=run)}:
            raise Refused(
                f"{compensation or 'that compensation'} is not available for {run}",
                kind=Refused.Kind.INVALID,
            )
        if corrected:
            raise Refused("a compensation takes no corrected payload", kind=Refused.Kind.INVALID)
        return compensation
    if run.state not in (RunState.PAUSED, RunState.COMPLETED):
        raise Refused(
            f"{run} is {run.state}; only a paused or completed run is replayed",
            kind=Refused.Kind.STATE,
        )
    return ""


def _replay_correction_check(
    *,
    kind: str,
    step_run: StepRun,
    exception: OperationalException | None,
    payload: Any,
) -> dict[str, Any]:
    """The corrected payload, checked by the step's declared input and normalized."""
    if not isinstance(payload, dict):
        raise Refused("the corrected payload must be a JSON object", kind=Refused.Kind.INVALID)
    refusal = selectors.replay_correction_refusal(kind=kind, step_run=step_run, exception=exception)
    if refusal:
        raise Refused(refusal, kind=Refused.Kind.INVALID)
    declared = step_input(kind=step_run.run.kind, step=step_run.name)
    assert declared is not None  # the refusal above says so otherwise
    return declared.check(step_run.run, payload)


def _decide(*, replay: Replay, actor: Actor, reason: str, what: str) -> Replay:
    """Maker-checker: a person other than the requester approves or rejects."""
    if not actor.has_perm("exceptions.approve_replay"):
        raise PermissionDenied(f"{actor.name} may not {what} replays")
    reason_require(reason)
    if replay.requested_by_id == actor.user.pk:
        raise PermissionDenied(
            f"{actor.name} requested {replay} and cannot {what} it: another person must"
        )
    return transition_apply(replay, what, actor=actor, reason=reason, by=actor.user, note=reason)


def replay_approve(*, replay: Replay, actor: Actor, reason: str) -> Replay:
    """A different person approves; a worker executes the replay after commit.

    One transaction. Refuses a blank reason (``ReasonRequired``), a replay that is not
    requested (``TransitionRefused``) and a lost race: of two concurrent approvals one wins
    and the other is refused (``CONFLICT``). Raises ``PermissionDenied`` without
    ``exceptions.approve_replay`` and for the requester (maker-checker). Returns it,
    approved."""
    with transaction.atomic():
        approved = _decide(replay=replay, actor=actor, reason=reason, what="approve")
        _enqueue_execution(approved)
    return approved


def replay_reject(*, replay: Replay, actor: Actor, reason: str) -> Replay:
    """A different person turns the replay down; nothing runs. The same refusals and
    permissions as ``replay_approve``. Returns it, rejected."""
    return _decide(replay=replay, actor=actor, reason=reason, what="reject")


def replay_execute(*, replay_id: int) -> str:
    """Execute an approved replay (the body of the Celery task); safe to run twice.

    The replay is locked and started in one transaction; a replay or workflow replay is
    handed to the engine there (a run the engine refuses fails the replay with the refusal's
    message), a compensation calls its system outside any transaction (``_compensate``).
    Refuses nothing. Returns the replay's state ("nothing to do" unless it was approved)."""
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
            except Refused as exc:
                with audit_context(actor=worker, reason=f"{replay} could not start"):
                    replay.fail(message=exc.message, result={})
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
    and the steps that ran on the running replay, if there is one (locked). Refuses nothing."""
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
