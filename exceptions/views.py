"""The exception queue pages: a filtered (or grouped) list, one exception, and its actions.

Every view needs the queue's view permission; the actions also need their own permission
(retry, or resolve/ignore), are POST only, and are checked here on the server.
"""

from __future__ import annotations

import json
import re

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_fsm import ConcurrentTransition

from exceptions import selectors, services
from exceptions.models import OPEN_STATES, Category, ExceptionState, OperationalException, Team
from q2c.audit import Actor
from q2c.errors import TransitionRefused
from q2c.pagination import BoundedPaginator
from q2c.records import SYSTEM_CHOICES
from q2c.views import PAGE_SIZE, HtmxHttpRequest, page_permission

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

# Codes an operator resolves with by hand ("retry_succeeded" is set only by the engine).
RESOLUTION_CODES: dict[str, str] = {
    "fixed_at_source": "Fixed in the source system",
    "fixed_downstream": "Fixed in the target system by hand",
    "data_corrected": "Data corrected in Tandem",
    "compensated": "Compensated (the effect was reversed)",
    "duplicate": "Duplicate of another exception",
    "not_a_problem": "Not a problem",
}


def _filters(params: QueryDict) -> tuple[selectors.ExceptionFilters, dict[str, str]]:
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
    }
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
    )
    return filters, chosen


@page_permission("exception-list")
def exception_list(request: HtmxHttpRequest) -> HttpResponse:
    filters, chosen = _filters(request.GET)
    grouped = request.GET.get("view") == "grouped"
    qs = (
        selectors.exception_groups(filters=filters)
        if grouped
        else selectors.exception_list(filters=filters)
    )
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    if grouped:
        categories, teams = dict(Category.choices), dict(Team.choices)
        page.object_list = [
            {
                **row,
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
            "resolution_codes": RESOLUTION_CODES,
            "can_retry": user.has_perm("exceptions.retry_exception"),
            "can_resolve": user.has_perm("exceptions.resolve_exception"),
        },
    )


def _require(request: HttpRequest, perm: str, what: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"you may not {what} exceptions")


# What the services refuse with a message an operator can act on; nothing is changed.
REFUSALS = (TransitionRefused, ValueError, ConcurrentTransition)


@require_POST
@page_permission("exception-list")
def exception_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Run the failed step behind the exception again (it resolves itself on success)."""
    _require(request, "exceptions.retry_exception", "retry")
    exception = get_object_or_404(OperationalException, pk=pk)
    reason = (request.POST.get("reason") or "").strip()
    try:
        if not exception.is_open:
            raise ValueError(f"EXC-{pk} is {exception.state}; only an open exception is retried")
        services.exception_retry(
            exception=exception, actor=Actor.person(request.user), reason=reason
        )
        messages.success(request, f"EXC-{pk}: step {exception.step} queued to run again")
    except REFUSALS as exc:
        messages.error(request, str(exc))
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
        if code not in RESOLUTION_CODES:
            raise ValueError(f"choose a resolution code to resolve EXC-{pk}")
        services.exception_resolve(
            exception=exception, code=code, actor=Actor.person(request.user), reason=reason
        )
        messages.success(request, f"EXC-{pk} resolved: {RESOLUTION_CODES[code]}")
    except REFUSALS as exc:
        messages.error(request, str(exc))
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
    except REFUSALS as exc:
        messages.error(request, str(exc))
    return redirect("exception-detail", pk=pk)
