"""Writes to the exception queue. Each runs in one transaction with the actor and reason."""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from exceptions.models import (
    CATEGORY_OWNER,
    CATEGORY_SLA,
    OPEN_STATES,
    Category,
    ExceptionState,
    OperationalException,
)
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import StepRun
from q2c.audit import Actor, audit_context
from q2c.errors import ReasonRequired
from q2c.models import ORDER_PRE_ACTIVE, Order, OrderState
from q2c.transitions import transition_apply


def exception_fingerprint(*, system: str, error_class: str, step: str) -> str:
    """Identical errors (same system, error class and step) share a fingerprint."""
    return hashlib.sha256(f"{system}|{error_class}|{step}".encode()).hexdigest()[:32]


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
