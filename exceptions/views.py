"""The exception queue pages: a filtered (or grouped) list, one exception, and its actions.

Every view needs the queue's view permission; the actions also need their own permission
(retry, or resolve/ignore), are POST only, and are checked here on the server.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.audit import Actor
from core.errors import Refused
from core.pagination import COUNT_LIMIT, BoundedPaginator
from core.params import id_from
from core.problems import Category, Severity, Team
from core.records import SYSTEM_CHOICES
from core.web import PAGE_SIZE, HtmxHttpRequest, page_permission
from exceptions import selectors, services
from exceptions.models import (
    OPEN_STATES,
    RESOLUTION_CODES,
    ExceptionState,
    OperationalException,
    Replay,
    ReplayKind,
    ReplayState,
)
from exceptions.templatetags.replays import pretty_json
from orchestration.workflows.engine import compensations_available, step_input
from orchestration.workflows.models import StepRun, WorkflowRun

OPEN_FILTER = ""  # the default: open or retrying
ANY_STATE = "any"
STATE_FILTERS = [
    (OPEN_FILTER, "Open or retrying"),
    *ExceptionState.choices,
    (ANY_STATE, "Any state"),
]
FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")

# What the owner team usually does next, by category (shown on the detail page).
NEXT_STEPS: dict[str, list[str]] = {
    Category.VALIDATION: [
        "Compare the quote in CPQ with the context below and correct it at the source.",
        "Retry once the source record is fixed; the order is released when the step succeeds.",
    ],
    Category.MAPPING: [
        "Map the product named in the context to the target system's item or plan.",
        "Retry the step; nothing was created downstream before the mapping check.",
    ],
    Category.MASTER_DATA: [
        "Review the customer's match candidates and link or merge the right account.",
        "Retry the step once the account resolves to exactly one canonical record.",
    ],
    Category.TAX: [
        "Check the customer's tax id, address and the legal entity's tax registration.",
        "Retry after the tax data is corrected; resolve if tax was handled outside Tandem.",
    ],
    Category.DOWNSTREAM_API: [
        "Check the outbound calls below and the system's circuit breaker in the admin.",
        "Retry when the system answers again; an effect that already exists is not repeated.",
    ],
    Category.DUPLICATE_EVENT: [
        "Confirm the earlier delivery was processed; then ignore this one with a reason.",
    ],
    Category.CONFIGURATION: [
        "Fix the connector setting named in the message (base URL, credentials, mapping).",
        "Retry the step once the setting is deployed.",
    ],
}

AGE_FILTERS: dict[str, tuple[str, dt.timedelta]] = {
    "1h": ("older than 1 hour", dt.timedelta(hours=1)),
    "4h": ("older than 4 hours", dt.timedelta(hours=4)),
    "24h": ("older than 1 day", dt.timedelta(days=1)),
    "7d": ("older than 7 days", dt.timedelta(days=7)),
}
ASSIGNEE_FILTERS = [("", "anyone"), ("me", "me"), ("none", "unassigned")]


def _filters(
    params: QueryDict, user_id: int | None = None
) -> tuple[selectors.ExceptionFilters, dict[str, str]]:
    """The filters from the query string; unknown values are dropped, never trusted."""

    def pick(name: str, allowed: list[str]) -> str:
        value = params.get(name) or ""
        return value if value in allowed else ""

    state = params.get("state") or OPEN_FILTER
    if state not in {value for value, _ in STATE_FILTERS}:
        state = OPEN_FILTER
    fingerprint = params.get("fingerprint") or ""
    chosen = {
        "state": state,
        "category": pick("category", Category.values),
        "owner_team": pick("owner_team", Team.values),
        "system": pick("system", [code for code, _ in SYSTEM_CHOICES]),
        "fingerprint": fingerprint if FINGERPRINT.match(fingerprint) else "",
        "severity": pick("severity", Severity.values),
        "assignee": pick("assignee", [value for value, _ in ASSIGNEE_FILTERS]),
        "age": pick("age", list(AGE_FILTERS)),
        "overdue": "1" if params.get("overdue") == "1" else "",
    }
    assignee_id: int | None = None
    if chosen["assignee"] == "none":
        assignee_id = 0
    elif chosen["assignee"] == "me" and user_id is not None:
        assignee_id = user_id
    if state == OPEN_FILTER:
        states: tuple[str, ...] = tuple(OPEN_STATES)
    elif state == ANY_STATE:
        states = ()
    else:
        states = (state,)
    filters = selectors.ExceptionFilters(
        states=states,
        category=chosen["category"],
        owner_team=chosen["owner_team"],
        system=chosen["system"],
        fingerprint=chosen["fingerprint"],
        severity=chosen["severity"],
        assignee_id=assignee_id,
        older_than=AGE_FILTERS[chosen["age"]][1] if chosen["age"] else None,
        overdue=bool(chosen["overdue"]),
    )
    return filters, chosen


@page_permission("exception-list")
def exception_list(request: HtmxHttpRequest) -> HttpResponse:
    filters, chosen = _filters(request.GET, request.user.pk)
    grouped = request.GET.get("view") == "grouped"
    rows: Any
    if grouped:
        # One aggregate read whole (groups are few) instead of a count and a page of it, each
        # aggregating every matching exception again.
        rows = list(selectors.exception_groups(filters=filters)[: COUNT_LIMIT + 1])
    else:
        rows = selectors.exception_list(filters=filters)
    page = BoundedPaginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    if grouped:
        categories, teams = dict(Category.choices), dict(Team.choices)
        examples = selectors.exception_group_examples(
            filters=filters, groups=list(page.object_list)
        )
        page.object_list = [
            {
                **row,
                "example": examples.get(row["fingerprint"], ""),
                "category_label": categories.get(row["category"], row["category"]),
                "owner_team_label": teams.get(row["owner_team"], row["owner_team"]),
            }
            for row in page.object_list
        ]
    context = {
        "page": page,
        "grouped": grouped,
        "chosen": chosen,
        "state_filters": STATE_FILTERS,
        "categories": Category.choices,
        "teams": Team.choices,
        "systems": SYSTEM_CHOICES,
        "severities": Severity.choices,
        "assignees": ASSIGNEE_FILTERS,
        "ages": [(value, label) for value, (label, _) in AGE_FILTERS.items()],
        "bulk_actions": _bulk_actions_for(request.user),
    }
    template = "exceptions/exception_list.html"
    if request.htmx:
        return render(request, f"{template}#rows", context)
    return render(request, template, context)


def _exception_or_404(pk: int) -> OperationalException:
    try:
        return selectors.exception_get(pk=pk)
    except OperationalException.DoesNotExist:
        raise Http404(f"no exception EXC-{pk}") from None


@page_permission("exception-list")
def exception_detail(request: HttpRequest, pk: int) -> HttpResponse:
    exception = _exception_or_404(pk)
    user = request.user
    pairs, merges = (
        selectors.exception_master_data_links(exception=exception)
        if exception.category in (Category.MASTER_DATA, Category.MAPPING)
        else ([], [])
    )
    return render(
        request,
        "exceptions/exception_detail.html",
        {
            "exception": exception,
            "context_json": json.dumps(
                exception.context, indent=2, sort_keys=True, ensure_ascii=False, default=str
            ),
            "steps": selectors.exception_steps(exception=exception),
            "calls": selectors.exception_outbound_calls(exception=exception),
            "history": exception.history.select_related("history_user").order_by(
                "-history_date", "-history_id"
            )[:50],
            "next_steps": NEXT_STEPS.get(exception.category, []),
            "duplicate_pairs": pairs,
            "merges": merges,
            "resolution_codes": RESOLUTION_CODES,
            "comments": selectors.exception_comments(exception=exception),
            "replays": exception.replays.select_related("requested_by").order_by("-pk"),
            "assignable": selectors.assignable_users(),
            "can_retry": user.has_perm("exceptions.retry_exception"),
            "can_resolve": user.has_perm("exceptions.resolve_exception"),
            "can_assign": user.has_perm("exceptions.assign_exception"),
            "can_comment": user.has_perm("exceptions.add_exceptioncomment"),
            "can_request_replay": user.has_perm("exceptions.request_replay"),
        },
    )


def _require(request: HttpRequest, perm: str, what: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"you may not {what} exceptions")


@require_POST
@page_permission("exception-list")
def exception_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Run the failed step behind the exception again (it resolves itself on success)."""
    _require(request, "exceptions.retry_exception", "retry")
    exception = get_object_or_404(OperationalException, pk=pk)
    reason = (request.POST.get("reason") or "").strip()
    try:
        services.exception_retry(
            exception=exception, actor=Actor.person(request.user), reason=reason
        )
        messages.success(request, f"EXC-{pk}: step {exception.step} queued to run again")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("exception-detail", pk=pk)


@require_POST
@page_permission("exception-list")
def exception_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """Close the exception as resolved, with a resolution code and the operator's reason."""
    _require(request, "exceptions.resolve_exception", "resolve")
    exception = get_object_or_404(OperationalException, pk=pk)
    code = request.POST.get("code") or ""
    reason = (request.POST.get("reason") or "").strip()
    try:
        services.exception_resolve(
            exception=exception, code=code, actor=Actor.person(request.user), reason=reason
        )
        messages.success(request, f"EXC-{pk} resolved: {RESOLUTION_CODES[code]}")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("exception-detail", pk=pk)


@require_POST
@page_permission("exception-list")
def exception_ignore(request: HttpRequest, pk: int) -> HttpResponse:
    """Close the exception without fixing anything, with the operator's reason."""
    _require(request, "exceptions.resolve_exception", "ignore")
    exception = get_object_or_404(OperationalException, pk=pk)
    reason = (request.POST.get("reason") or "").strip()
    try:
        services.exception_ignore(
            exception=exception, actor=Actor.person(request.user), reason=reason
        )
        messages.success(request, f"EXC-{pk} ignored")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("exception-detail", pk=pk)


@require_POST
@page_permission("exception-list")
def exception_assign(request: HttpRequest, pk: int) -> HttpResponse:
    """Give the exception to me or to someone (or back to the team), with a reason."""
    _require(request, "exceptions.assign_exception", "assign")
    exception = get_object_or_404(OperationalException, pk=pk)
    reason = (request.POST.get("reason") or "").strip() or "assigned"
    try:
        assignee = selectors.assignee_choose(
            choice=request.POST.get("assignee") or "", me=request.user
        )
        services.exception_assign(
            exception=exception, assignee=assignee, actor=Actor.person(request.user), reason=reason
        )
        who = assignee.get_username() if assignee else "the owner team"
        messages.success(request, f"EXC-{pk} assigned to {who}")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("exception-detail", pk=pk)


@require_POST
@page_permission("exception-list")
def exception_comment(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request, "exceptions.add_exceptioncomment", "comment on")
    exception = get_object_or_404(OperationalException, pk=pk)
    try:
        services.exception_comment(
            exception=exception,
            body=request.POST.get("body") or "",
            actor=Actor.person(request.user),
        )
        messages.success(request, f"comment added to EXC-{pk}")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("exception-detail", pk=pk)


ACCOUNT_ID = re.compile(r"^ACC-\d{1,12}$")


@page_permission("exception-list")
def exceptions_naming(request: HttpRequest) -> HttpResponse:
    """The master-data exceptions that name any of ``?account=ACC-…`` (at most 10 accounts):
    the duplicate pair and merge pages load it to link back to what they answer."""
    accounts = [a for a in request.GET.getlist("account") if ACCOUNT_ID.match(a)][:10]
    return render(
        request,
        "exceptions/_naming.html",
        {"exceptions": selectors.exceptions_naming_accounts(enterprise_ids=accounts)},
    )


# --- Bulk actions ---------------------------------------------------------------------------

BULK_PERMISSIONS = {
    "retry": ("exceptions.retry_exception", "Retry the failed step"),
    "assign": ("exceptions.assign_exception", "Assign"),
    "resolve": ("exceptions.resolve_exception", "Resolve"),
}


def _bulk_actions_for(user: Any) -> list[tuple[str, str]]:
    return [
        (name, label) for name, (perm, label) in BULK_PERMISSIONS.items() if user.has_perm(perm)
    ]


@require_POST
@page_permission("exception-list")
def exception_bulk(request: HttpRequest) -> HttpResponse:
    """A bulk action on a selection (``pk``) or a whole group (``fingerprint``): the first
    POST shows what will be done and asks for confirmation, the confirmed POST runs it and
    shows the report (done, failed and why, per exception)."""
    action = request.POST.get("action") or ""
    fingerprint = request.POST.get("fingerprint") or ""
    group = request.POST.get("group") or ""  # "<action>:<fingerprint>" from a group's button
    if group:
        action, _, fingerprint = group.partition(":")
    if action not in BULK_PERMISSIONS:
        messages.error(request, "choose a bulk action")
        return redirect("exception-list")
    _require(request, BULK_PERMISSIONS[action][0], action)
    if fingerprint and FINGERPRINT.match(fingerprint):
        pks = selectors.exception_pks_for_group(fingerprint=fingerprint)
    else:
        fingerprint = ""
        pks = sorted({pk for v in request.POST.getlist("pk") if (pk := id_from(v)) is not None})
    if not pks:
        messages.error(request, "select at least one exception")
        return redirect("exception-list")
    context: dict[str, Any] = {
        "action": action,
        "action_label": BULK_PERMISSIONS[action][1],
        "fingerprint": fingerprint,
        "pks": pks,
        "resolution_codes": RESOLUTION_CODES,
        "assignable": selectors.assignable_users(),
    }
    if request.POST.get("confirm") != "1":
        context["exceptions"] = OperationalException.objects.filter(pk__in=pks).order_by("pk")
        return render(request, "exceptions/exception_bulk.html", context)
    reason = (request.POST.get("reason") or "").strip()
    code = request.POST.get("code") or ""
    try:
        assignee = selectors.assignee_choose(
            choice=request.POST.get("assignee") or "", me=request.user
        )
        report = services.exceptions_bulk(
            action=action, pks=pks, actor=Actor.person(request.user), reason=reason,
            code=code, assignee=assignee,
        )  # fmt: skip
    except Refused as exc:
        messages.error(request, exc.message)
        context["exceptions"] = OperationalException.objects.filter(pk__in=pks).order_by("pk")
        return render(request, "exceptions/exception_bulk.html", context, status=400)
    context["report"] = report
    if action == "retry":
        context["refused"] = [item for item in report.items if not item.ok]
        context.update(_outcome_context([item.pk for item in report.items if item.ok]))
    return render(request, "exceptions/exception_bulk.html", context)


OUTCOME_MAX = 1000  # exceptions one report follows


def _outcome_context(pks: list[int]) -> dict[str, Any]:
    outcomes = selectors.retry_outcomes(pks=pks[:OUTCOME_MAX])
    counts = {
        name: sum(1 for o in outcomes if o.outcome == name)
        for name in (
            selectors.OUTCOME_PENDING,
            selectors.OUTCOME_SUCCEEDED,
            selectors.OUTCOME_FAILED,
            selectors.OUTCOME_CLOSED,
        )
    }
    return {
        "outcomes": outcomes,
        "counts": counts,
        "settled": counts[selectors.OUTCOME_PENDING] == 0,
        "outcome_query": "&".join(f"pk={o.pk}" for o in outcomes),
        "now": timezone.now(),
    }


@page_permission("exception-list")
def exception_bulk_outcome(request: HttpRequest) -> HttpResponse:
    """The live outcome of retried exceptions (``?pk=…``): the bulk report polls it until
    every one has succeeded or failed again."""
    pks = sorted({pk for v in request.GET.getlist("pk") if (pk := id_from(v)) is not None})
    pks = pks[:OUTCOME_MAX]
    return render(request, "exceptions/exception_bulk.html#outcome", _outcome_context(pks))


# --- Replays --------------------------------------------------------------------------------

REPLAY_STATE_FILTERS = [("", "Any state"), *ReplayState.choices]


@page_permission("replay-list")
def replay_list(request: HtmxHttpRequest) -> HttpResponse:
    state = request.GET.get("state") or ""
    if state not in ReplayState.values:
        state = ""
    page = BoundedPaginator(selectors.replay_list(state=state), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "state": state, "state_filters": REPLAY_STATE_FILTERS}
    template = "exceptions/replay_list.html"
    if request.htmx:
        return render(request, f"{template}#rows", context)
    return render(request, template, context)


def payload_diff(original: Any, corrected: Any) -> list[tuple[str, str]]:
    """A unified diff of the pretty JSON, as (css class, line) pairs."""
    lines = difflib.unified_diff(
        pretty_json(original).splitlines(), pretty_json(corrected).splitlines(),
        fromfile="original", tofile="corrected", lineterm="",
    )  # fmt: skip
    kinds = {"+": "added", "-": "removed", "@": "hunk"}
    return [(kinds.get(line[:1], "same"), line) for line in lines]


@page_permission("replay-list")
def replay_create(request: HttpRequest) -> HttpResponse:
    """Request a replay of ``?step_run=`` (and the steps after it) or ``?workflow_run=``, or
    a compensation offered for the run; shows the dry run before anything is asked."""
    _require(request, "exceptions.request_replay", "request replays of")
    source = request.POST if request.method == "POST" else request.GET
    step_run, workflow_run = _replay_target(source)
    run = step_run.run if step_run is not None else workflow_run
    assert run is not None
    start = step_run or StepRun.objects.filter(run=run).order_by("position").first()
    if start is None:
        raise Http404(f"{run} has no steps")
    context = _replay_create_context(run=run, step_run=step_run, start=start)
    if request.method != "POST":
        return render(request, "exceptions/replay_create.html", context)
    kind = request.POST.get("kind") or ""
    corrected_text = (request.POST.get("corrected_payload") or "").strip()
    try:
        replay = services.replay_request(
            kind=kind if kind in {k for k, _ in context["kinds"]} else "",
            actor=Actor.person(request.user),
            reason=(request.POST.get("reason") or "").strip(),
            step_run=start if kind != ReplayKind.WORKFLOW else None,
            workflow_run=run,
            compensation=request.POST.get("compensation") or "",
            corrected_payload=_corrected_payload(corrected_text, context["original_json"]),
        )
    except Refused as exc:
        messages.error(request, exc.message)
        context["corrected_text"] = corrected_text
        return render(request, "exceptions/replay_create.html", context, status=400)
    messages.success(request, f"{replay} requested; another person must approve it")
    return redirect("replay-detail", pk=replay.pk)


def _replay_create_context(
    *, run: WorkflowRun, step_run: StepRun | None, start: StepRun
) -> dict[str, Any]:
    """What the replay page offers for ``run`` from ``start``: the kinds, the compensations,
    whether the input may be corrected, the original payload and the dry run."""
    exception = selectors.run_open_exception(run=run)
    kinds = [ReplayKind.STEP] if step_run is not None else [ReplayKind.WORKFLOW]
    compensations = compensations_available(run=run)
    if compensations:
        kinds.append(ReplayKind.COMPENSATION)
    original = selectors.replay_original_payload(step_run=start, exception=exception)
    refusal = selectors.replay_correction_refusal(
        kind=kinds[0], step_run=start, exception=exception
    )
    declared = step_input(kind=run.kind, step=start.name)
    return {
        "run": run,
        "step_run": step_run,
        "exception": exception,
        "kinds": [(kind, ReplayKind(kind).label) for kind in kinds],
        "compensations": [(c.code, c.label) for c in compensations],
        "correctable": not refusal,
        "correction_refusal": refusal,
        "payload_describe": declared.describe if declared is not None else "",
        "original_json": pretty_json(original),
        "preview": selectors.replay_preview(
            kind=kinds[0], step_run=start, compensation="", payload=original
        ),
    }


def _corrected_payload(text: str, original_json: str) -> Any:
    """The corrected payload typed in the form (None when it means the same JSON as the
    original: a browser sends the untouched textarea back with CRLF line endings, and
    whitespace or key order is no correction), refused when it is not JSON (``INVALID``)."""
    if not text:
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(
            f"the corrected payload is not valid JSON: {exc}", kind=Refused.Kind.INVALID
        ) from None
    if payload == json.loads(original_json):
        return None
    return payload


def _replay_target(params: QueryDict) -> tuple[StepRun | None, WorkflowRun | None]:
    step_value = params.get("step_run") or ""
    run_value = params.get("workflow_run") or ""
    step_pk, run_pk = id_from(step_value), id_from(run_value)
    if step_pk is not None:
        step = StepRun.objects.select_related("run").filter(pk=step_pk).first()
        if step is None:
            raise Http404(f"no step run {step_value}")
        return step, step.run
    if run_pk is not None:
        run = WorkflowRun.objects.filter(pk=run_pk).first()
        if run is None:
            raise Http404(f"no workflow run {run_value}")
        return None, run
    raise Http404("name the step (?step_run=) or the workflow run (?workflow_run=) to replay")


def _replay_or_404(pk: int) -> Replay:
    try:
        return selectors.replay_get(pk=pk)
    except Replay.DoesNotExist:
        raise Http404(f"no replay RPL-{pk}") from None


@page_permission("replay-list")
def replay_detail(request: HttpRequest, pk: int) -> HttpResponse:
    replay = _replay_or_404(pk)
    user = request.user
    diff = (
        payload_diff(replay.original_payload, replay.corrected_payload)
        if replay.corrected_payload is not None
        else []
    )
    return render(
        request,
        "exceptions/replay_detail.html",
        {
            "replay": replay,
            "diff": diff,
            "original_json": pretty_json(replay.original_payload),
            "history": replay.history.select_related("history_user").order_by(
                "-history_date", "-history_id"
            )[:50],
            "may_decide": (
                replay.state == ReplayState.REQUESTED
                and user.has_perm("exceptions.approve_replay")
                and replay.requested_by_id != user.pk
            ),
            "own_request": replay.requested_by_id == user.pk,
        },
    )


def _replay_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    _require(request, "exceptions.approve_replay", f"{decision}")
    replay = get_object_or_404(Replay, pk=pk)
    reason = (request.POST.get("reason") or "").strip()
    service = services.replay_approve if decision == "approve" else services.replay_reject
    try:
        service(replay=replay, actor=Actor.person(request.user), reason=reason)
        messages.success(request, f"RPL-{pk} {decision}d")
    except Refused as exc:
        messages.error(request, exc.message)
    except PermissionDenied as exc:  # the permission is checked above: this is maker-checker
        messages.error(request, str(exc))
    return redirect("replay-detail", pk=pk)


@require_POST
@page_permission("replay-list")
def replay_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _replay_decide(request, pk, "approve")


@require_POST
@page_permission("replay-list")
def replay_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _replay_decide(request, pk, "reject")
