"""Reads of the exception queue for the console: filtered lists, groups, one exception's story."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from core.errors import Refused
from core.params import id_from
from core.problems import Category
from exceptions.models import (
    CORRECTABLE_CATEGORIES,
    OPEN_STATES,
    ExceptionComment,
    ExceptionState,
    OperationalException,
    Replay,
    ReplayKind,
    ReplayState,
)
from masterdata.models import Account, DuplicateCandidate, MergeRecord
from orchestration.models import OutboundCall
from orchestration.workflows.models import StepEffect, StepRun, StepState, WorkflowRun
from orchestration.workflows.observers import Correction

# Enough to follow one deal; an order with more calls than this is read in the admin.
OUTBOUND_CALLS_SHOWN = 200


@dataclass(frozen=True)
class ExceptionFilters:
    """What the queue is narrowed to. ``states`` empty means every state."""

    states: tuple[str, ...] = tuple(OPEN_STATES)
    category: str = ""
    owner_team: str = ""
    system: str = ""
    fingerprint: str = ""
    severity: str = ""
    assignee_id: int | None = None  # 0 means unassigned
    older_than: dt.timedelta | None = None
    overdue: bool = False


def _filtered(filters: ExceptionFilters) -> QuerySet[OperationalException]:
    qs = OperationalException.objects.all()
    if filters.severity:
        qs = qs.filter(severity=filters.severity)
    if filters.assignee_id == 0:
        qs = qs.filter(assignee__isnull=True)
    elif filters.assignee_id is not None:
        qs = qs.filter(assignee_id=filters.assignee_id)
    if filters.older_than is not None:
        qs = qs.filter(created_at__lt=timezone.now() - filters.older_than)
    if filters.overdue:
        qs = qs.filter(state__in=OPEN_STATES, sla_due_at__lt=timezone.now())
    if filters.states:
        qs = qs.filter(state__in=filters.states)
    if filters.category:
        qs = qs.filter(category=filters.category)
    if filters.owner_team:
        qs = qs.filter(owner_team=filters.owner_team)
    if filters.system:
        qs = qs.filter(system=filters.system)
    if filters.fingerprint:
        qs = qs.filter(fingerprint=filters.fingerprint)
    return qs


def exception_list(*, filters: ExceptionFilters) -> QuerySet[OperationalException]:
    """Exceptions newest first, with the order each one holds (one query per page)."""
    return _filtered(filters).select_related("order", "assignee").order_by("-created_at", "-pk")


GROUP_FIELDS = ("fingerprint", "category", "owner_team", "system", "step", "error_class")


def exception_groups(*, filters: ExceptionFilters) -> QuerySet[OperationalException, Any]:
    """Identical errors (one fingerprint) as one row each: how many, since when, due when.

    Rows are dicts; the most frequent group comes first. For open exceptions the columns read
    here are all in ``exception_open_group_idx``, so the groups are counted from the index
    alone; each group's example message is read for the groups on the page only
    (``exception_group_examples``).
    """
    return (
        _filtered(filters)
        .values(*GROUP_FIELDS)
        .annotate(
            count=Count("*"),
            first_seen=Min("created_at"),
            last_seen=Max("created_at"),
            earliest_due=Min("sla_due_at"),
        )
        .order_by("-count", "-last_seen", "fingerprint")
    )


def exception_group_examples(
    *, filters: ExceptionFilters, groups: list[dict[str, Any]]
) -> dict[str, str]:
    """The message of the newest matching exception of each group's fingerprint (the same
    system, error class and step), by fingerprint. One query on PostgreSQL: a ``UNION ALL`` of
    one-row reads, each the end of the fingerprint's range of ``exception_fp_created_idx``; on a
    database that cannot LIMIT inside a UNION (SQLite), a correlated subquery per group."""
    fingerprints = sorted({group["fingerprint"] for group in groups})
    if not fingerprints:
        return {}
    parts = [
        _filtered(filters)
        .filter(fingerprint=fingerprint)
        .order_by("-created_at", "-pk")
        .values_list("fingerprint", "message")[:1]
        for fingerprint in fingerprints
    ]
    if len(parts) == 1:
        return dict(parts[0])
    if connection.features.supports_slicing_ordering_in_compound:
        return dict(parts[0].union(*parts[1:], all=True))
    # SQLite (the demo's database) allows no LIMIT inside a UNION: still one query, each
    # fingerprint's newest message read by a correlated subquery.
    newest = (
        _filtered(filters)
        .filter(fingerprint=OuterRef("fingerprint"))
        .order_by("-created_at", "-pk")
        .values("message")[:1]
    )
    rows = (
        OperationalException.objects.filter(fingerprint__in=fingerprints)
        .order_by()
        .values("fingerprint")
        .annotate(example=Subquery(newest))
        .values_list("fingerprint", "example")
        .distinct()
    )
    return {fingerprint: example for fingerprint, example in rows if example is not None}


def exception_get(*, pk: int) -> OperationalException:
    """One exception with its order, run, step and assignee (raises DoesNotExist)."""
    return OperationalException.objects.select_related(
        "order", "workflow_run", "step_run", "assignee"
    ).get(pk=pk)


def exception_steps(*, exception: OperationalException) -> QuerySet[StepRun]:
    """The steps of the workflow run behind the exception, in order (none without a run)."""
    if exception.workflow_run_id is None:
        return StepRun.objects.none()
    return StepRun.objects.filter(run_id=exception.workflow_run_id).order_by("position")


def exception_outbound_calls(*, exception: OperationalException) -> list[OutboundCall]:
    """The calls made for the exception's deal, oldest first, without their bodies."""
    if not exception.correlation_id:
        return []
    newest = (
        OutboundCall.objects.filter(correlation_id=exception.correlation_id)
        .defer("request_body", "response_body")
        .order_by("-created_at", "-pk")[:OUTBOUND_CALLS_SHOWN]
    )
    return list(reversed(newest))


def exception_comments(*, exception: OperationalException) -> QuerySet[ExceptionComment]:
    """The exception's comments, oldest first, with their authors (one query)."""
    return exception.comments.select_related("author").order_by("created_at", "pk")


def assignable_users() -> QuerySet[Any]:
    """Active people with a role in Tandem, by name."""
    from django.contrib.auth import get_user_model

    from core.roles import ROLE_NAMES

    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=ROLE_NAMES)
        .distinct()
        .order_by("username")
    )


def assignee_choose(*, choice: str, me: Any) -> Any:
    """The person an operator gives an exception to: ``"me"``, nobody (``""``, back to the
    owner team's queue: ``None``) or the pk of an active person with a role in Tandem.
    Refuses anything else ("choose a person with a role in Tandem", ``INVALID``)."""
    if choice == "me":
        return me
    if not choice:
        return None
    pk = id_from(choice)
    found = assignable_users().filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise Refused("choose a person with a role in Tandem", kind=Refused.Kind.INVALID)
    return found


def exception_pks_for_group(*, fingerprint: str) -> list[int]:
    """The open exceptions sharing one fingerprint (a group), oldest first."""
    return list(
        OperationalException.objects.filter(fingerprint=fingerprint, state__in=OPEN_STATES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# What became of a retried exception, as the bulk report shows it live.
OUTCOME_PENDING = "pending"  # queued, running or waiting to try again
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_FAILED = "failed"  # failed again, the exception open with the new error
OUTCOME_CLOSED = "closed"  # resolved or ignored by a person meanwhile


@dataclass(frozen=True)
class RetryOutcome:
    pk: int
    outcome: str
    label: str  # what the report says, e.g. "retry scheduled: attempt 2 of 10 failed"
    detail: str  # the new error, or the last one before the next try
    attempts: int
    next_attempt_at: dt.datetime | None = None


def retry_outcomes(*, pks: list[int]) -> list[RetryOutcome]:
    """What became of each retried exception in ``pks`` (pk order; unknown ones left out):
    succeeded, failed again (with the new error), still going (queued, running, a retry
    scheduled and when) or closed by someone meanwhile. One query."""
    found = (
        OperationalException.objects.filter(pk__in=pks).select_related("step_run").order_by("pk")
    )
    outcomes = []
    for exc in found:
        step = exc.step_run
        attempts = step.attempts if step is not None else 0
        if exc.state == ExceptionState.OPEN:
            outcome = RetryOutcome(exc.pk, OUTCOME_FAILED, "failed again", exc.message, attempts)
        elif exc.state == ExceptionState.RESOLVED and exc.resolution_code == "retry_succeeded":
            outcome = RetryOutcome(exc.pk, OUTCOME_SUCCEEDED, "succeeded", "", attempts)
        elif exc.state != ExceptionState.RETRYING:
            label = f"{exc.get_state_display().lower()} by a person meanwhile"
            outcome = RetryOutcome(exc.pk, OUTCOME_CLOSED, label, exc.resolution_note, attempts)
        elif step is not None and step.state == StepState.RETRY_SCHEDULED:
            label = f"retry scheduled: attempt {attempts} of {step.max_attempts} failed"
            outcome = RetryOutcome(
                exc.pk, OUTCOME_PENDING, label, step.last_error, attempts, step.next_attempt_at
            )
        else:
            label = step.get_state_display().lower() if step is not None else "queued"
            outcome = RetryOutcome(exc.pk, OUTCOME_PENDING, label, "", attempts)
        outcomes.append(outcome)
    return outcomes


def exceptions_naming_account(*, enterprise_id: str) -> list[OperationalException]:
    """Master-data exceptions whose candidate accounts include ``enterprise_id``, locked
    (call inside a transaction).

    The JSON list is read in Python (SQLite and PostgreSQL alike; there are few of them) and
    only the matching rows are locked, in pk order."""
    naming = [
        pk
        for pk, context in OperationalException.objects.filter(
            category=Category.MASTER_DATA
        ).values_list("pk", "context")
        if enterprise_id in ((context or {}).get("candidates") or [])
    ]
    return list(
        OperationalException.objects.select_for_update().filter(pk__in=naming).order_by("pk")
    )


def exceptions_naming_accounts(*, enterprise_ids: list[str]) -> list[OperationalException]:
    """Master-data exceptions (any state, newest first) whose candidate accounts or whose
    order's account is one of ``enterprise_ids``: what a duplicate pair or a merge of those
    accounts answers. The JSON list is read in Python, as ``exceptions_naming_account``."""
    wanted = set(enterprise_ids)
    if not wanted:
        return []
    naming = [
        pk
        for pk, context, account in OperationalException.objects.filter(
            category=Category.MASTER_DATA
        ).values_list("pk", "context", "order__account__enterprise_id")
        if wanted & set((context or {}).get("candidates") or []) or account in wanted
    ]
    return list(
        OperationalException.objects.filter(pk__in=naming)
        .select_related("order")
        .order_by("-created_at", "-pk")
    )


def exception_master_data_links(
    *, exception: OperationalException
) -> tuple[list[DuplicateCandidate], list[MergeRecord]]:
    """The duplicate pairs and merges among the accounts a master-data exception names (its
    candidates and its order's account), newest first: how it is being answered."""
    names = [str(n) for n in (exception.context or {}).get("candidates") or []]
    account_id = exception.order.account_id if exception.order is not None else None
    if not names and account_id is None:
        return [], []
    accounts = Account.objects.filter(Q(enterprise_id__in=names) | Q(pk=account_id))
    pairs = list(
        DuplicateCandidate.objects.filter(Q(account_a__in=accounts) | Q(account_b__in=accounts))
        .select_related("account_a", "account_b")
        .order_by("-detected_at", "-pk")[:20]
    )
    merges = list(
        MergeRecord.objects.filter(Q(survivor__in=accounts) | Q(loser__in=accounts))
        .select_related("survivor", "loser")
        .order_by("-requested_at", "-pk")[:20]
    )
    return pairs, merges


# --- Replays --------------------------------------------------------------------------------


def run_open_exception(*, run: WorkflowRun) -> OperationalException | None:
    """The run's newest open (or retrying) exception: the one a replay of the run answers."""
    return (
        OperationalException.objects.filter(workflow_run=run, state__in=OPEN_STATES)
        .order_by("-created_at", "-pk")
        .first()
    )


def replay_list(*, state: str = "") -> QuerySet[Replay]:
    """Replays newest first, with who asked and who decided (one query per page)."""
    qs = Replay.objects.select_related(
        "requested_by", "decided_by", "workflow_run", "step_run", "exception"
    )
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-requested_at", "-pk")


def replay_get(*, pk: int) -> Replay:
    """One replay with who asked, who decided and what it replays (raises DoesNotExist)."""
    return Replay.objects.select_related(
        "requested_by", "decided_by", "workflow_run", "step_run", "exception"
    ).get(pk=pk)


def replay_correction(*, step_run_id: int) -> Correction | None:
    """The corrected payload of the running replay that starts at this step, if any."""
    found = (
        Replay.objects.filter(step_run_id=step_run_id, state=ReplayState.RUNNING)
        .exclude(corrected_payload__isnull=True)
        .select_related("decided_by")
        .first()
    )
    if found is None or not isinstance(found.corrected_payload, dict):
        return None
    approver = found.decided_by.get_username() if found.decided_by else "nobody"
    return Correction(payload=found.corrected_payload, reason=f"{found} approved by {approver}")


def replay_correction_refusal(
    *, kind: str, step_run: StepRun, exception: OperationalException | None
) -> str:
    """Why a replay starting at ``step_run`` cannot take a corrected payload ('' when it can).

    The failure must be about data (a correctable category), the replay must start at the
    failed step, and that step must declare its input (``StepDef.payload``): a correction
    nothing reads is refused rather than silently ignored.
    """
    from orchestration.workflows.engine import step_input

    if kind == ReplayKind.COMPENSATION:
        return "a compensation takes no corrected payload"
    category = exception.category if exception is not None else ""
    if exception is None or category not in CORRECTABLE_CATEGORIES:
        allowed = ", ".join(sorted(CORRECTABLE_CATEGORIES))
        return (
            f"a corrected payload is allowed only for {allowed} exceptions,"
            f" not for {category or 'a run without an open exception'}"
        )
    if exception.step_run_id != step_run.pk:
        return (
            f"a corrected payload replaces the input of the failed step {exception.step};"
            f" replay from that step to correct it"
        )
    if step_input(kind=step_run.run.kind, step=step_run.name) is None:
        return (
            f"step {step_run.name} takes no corrected payload: correct the records it reads"
            f" (the order, the catalog, the mappings) and replay it unchanged"
        )
    return ""


def replay_original_payload(
    *, step_run: StepRun, exception: OperationalException | None
) -> dict[str, Any]:
    """What the step works with: its declared input (``StepDef.payload``) read from the
    records as they are now; for a step without one, the exception's context, else its result."""
    from orchestration.workflows.engine import step_input

    declared = step_input(kind=step_run.run.kind, step=step_run.name)
    if declared is not None:
        return declared.read(step_run.run)
    if exception is not None and exception.step_run_id == step_run.pk:
        return dict(exception.context)
    return {"result": step_run.result, "external_id": step_run.external_id}


def replay_preview(
    *,
    kind: str,
    step_run: StepRun,
    compensation: str,
    payload: dict[str, Any],
    corrected: bool = False,
) -> dict[str, Any]:
    """The dry run: which steps run again, which effects exist and are skipped, what is sent.

    ``payload`` is what the first step works with (``corrected``: a correction that replaces
    its declared input before it runs). A read: refuses nothing, sends nothing."""
    from orchestration.workflows.engine import step_input

    if kind == ReplayKind.COMPENSATION:
        return _compensation_preview(run=step_run.run, compensation=compensation)
    rows = _replay_step_rows(step_run=step_run, corrected=corrected)
    declared = step_input(kind=step_run.run.kind, step=step_run.name)
    uses = None
    if declared is not None:
        uses = {
            "step": step_run.name,
            "what": declared.describe,
            "corrected": corrected,
            "payload": payload,
        }
    return {
        "steps": rows,
        "sends": [
            {"system": row["system"], "step": row["name"], "payload": payload if i == 0 else None}
            for i, row in enumerate(rows)
            if row["action"] == "run"
        ],
        "payload": payload,
        "uses": uses,
        "then": "the exception resolves itself when the failed step succeeds",
    }


def _compensation_preview(*, run: WorkflowRun, compensation: str) -> dict[str, Any]:
    """The one call a compensation makes, and whether it was made already."""
    from orchestration.workflows.engine import (
        compensation_def,
        compensation_key,
        compensation_target,
    )

    key = compensation_key(run=run, code=compensation)
    undo = compensation_def(run=run, code=compensation)
    return {
        "steps": [],
        "sends": [
            {
                "system": undo.system if undo else "",
                "operation": undo.operation if undo else "",
                "target": compensation_target(run=run, code=compensation),
                "idempotency_key": key,
                "already_done": StepEffect.objects.filter(idempotency_key=key).exists(),
            }
        ],
        "then": "resolve the run's open exceptions, cancel the run and the order",
    }


def _replay_step_rows(*, step_run: StepRun, corrected: bool) -> list[dict[str, Any]]:
    """``step_run`` and the steps after it, in order, each with what the replay does to it:
    skip (its effect exists), run (calls its system), or check (runs again, no effect)."""
    from orchestration.workflows.engine import REGISTRY

    run = step_run.run
    definition = REGISTRY.get(run.kind)
    defs = {step.name: step for step in definition.steps} if definition else {}
    steps = sorted(
        StepRun.objects.filter(run=run, position__gte=step_run.position),
        key=lambda s: s.position,
    )
    effects = {
        effect.idempotency_key: effect
        for effect in StepEffect.objects.filter(
            idempotency_key__in=[step.idempotency_key for step in steps]
        )
    }
    signals = set(run.signals.values_list("event_type", flat=True))
    rows = []
    for step in steps:
        step_def = defs.get(step.name)
        has_effect = step_def.has_effect if step_def else True
        effect = effects.get(step.idempotency_key)
        if has_effect and effect is not None:
            action, detail = "skip", f"effect exists in {effect.system}: {effect.external_id}"
        elif has_effect:
            action, detail = "run", f"calls {step.system} under key {step.idempotency_key}"
        elif step.waiting_for:
            received = step.waiting_for in signals
            action = "check"
            detail = f"waits for {step.waiting_for} ({'received' if received else 'not yet'})"
        else:
            action, detail = "check", "runs again (no external effect)"
        if corrected and step.pk == step_run.pk:
            detail += "; uses the corrected payload"
        rows.append(
            {"pk": step.pk, "name": step.name, "system": step.system, "state": step.state,
             "action": action, "detail": detail}
        )  # fmt: skip
    return rows
