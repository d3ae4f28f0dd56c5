"""Console pages for the canonical records. Every view checks its permission on the server."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from console import preferences, saved_views
from console.models import NotificationPreference
from console.notifications import notification_preference_set
from console.selectors import dashboard as dashboard_selectors
from console.selectors import my_work as my_work_selectors
from console.selectors import records as selectors
from console.selectors import timeline
from console.selectors.timeline import Timeline
from core.audit import Actor
from core.errors import Refused
from core.pagination import BoundedPaginator
from core.records import SYSTEM_CHOICES, SYSTEMS
from core.roles import role_of
from core.web import PAGE_SIZE, HtmxHttpRequest, page_permission
from exceptions.services import order_release_for_operator, step_retry_for_operator
from masterdata.models import LegalEntity
from orchestration.models import OutboundCall
from orchestration.reconciliation.selectors import reconciliation_effort
from orchestration.workflows.models import StepRun, StepState, WorkflowRun
from q2c import selectors as q2c_selectors
from q2c import services
from q2c.models import (
    ORDER_PRE_ACTIVE,
    Contract,
    ContractState,
    Invoice,
    InvoiceState,
    Order,
    OrderState,
)

HOLDABLE = [*ORDER_PRE_ACTIVE, OrderState.ON_HOLD]
QUERY_MAX = 100
LEGAL_ENTITY_CODE = re.compile(r"[A-Za-z0-9_.-]{1,20}")
CURRENCY = re.compile(r"[A-Z]{3}")
ACCOUNT_ID = re.compile(r"ACC-\d{1,12}")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    role = role_of(user)
    if not role:
        raise PermissionDenied("your user has no role in Tandem; ask an admin to assign one")
    panels = []
    for model, perm, title, url_name in (
        (Order, "q2c.view_order", "Orders", "order-list"),
        (Contract, "q2c.view_contract", "Contracts", "contract-list"),
        (Invoice, "q2c.view_invoice", "Invoices", "invoice-list"),
    ):
        if user.has_perm(perm):
            panels.append(
                {"title": title, "url_name": url_name, "rows": selectors.counts_by_state(model)}
            )
    now = timezone.now()
    since = _previous_visit(request, now=now)
    work = my_work_selectors.my_work(user=user, since=since, now=now)
    preference = NotificationPreference.objects.filter(user_id=int(user.pk or 0)).first()
    return render(
        request,
        "console/home.html",
        {
            "role": role,
            "panels": panels,
            "work": work,
            "email_on": preference is None or preference.email,
            "time_zone": preferences.time_zone_of(request),
            "time_zones": preferences.time_zone_names(),
            "site_time_zone": settings.TIME_ZONE,
        },
    )


HOME_SEEN_KEY = "home_seen_at"


def _previous_visit(request: HttpRequest, *, now: dt.datetime) -> dt.datetime | None:
    """When this person last opened their home page (kept in the session), and now is the
    new last visit."""
    seen = request.session.get(HOME_SEEN_KEY)
    request.session[HOME_SEEN_KEY] = now.isoformat()
    try:
        return dt.datetime.fromisoformat(seen) if seen else None
    except ValueError:
        return None


@require_POST
@login_required
def notification_preference(request: HttpRequest) -> HttpResponse:
    """Turn my e-mail notices (SLA breaches, approvals waiting) on or off."""
    if not role_of(request.user):
        raise PermissionDenied("your user has no role in Tandem; ask an admin to assign one")
    email = request.POST.get("email") == "1"
    notification_preference_set(user=request.user, email=email)
    messages.success(request, f"e-mail notices turned {'on' if email else 'off'}")
    return redirect("home")


@require_POST
@login_required
def time_zone_preference(request: HttpRequest) -> HttpResponse:
    """Show my times in the zone I pick (blank: the site's zone)."""
    if not role_of(request.user):
        raise PermissionDenied("your user has no role in Tandem; ask an admin to assign one")
    try:
        preference = preferences.time_zone_set(
            user=request.user, name=str(request.POST.get("time_zone", ""))[:100]
        )
    except Refused as exc:
        messages.error(request, exc.message)
        return redirect("home")
    request.session[preferences.SESSION_KEY] = preference.time_zone
    messages.success(
        request,
        f"times are shown in {preference.time_zone or settings.TIME_ZONE + ' (the site zone)'}",
    )
    return redirect("home")


def _list_url(request: HttpRequest) -> str:
    """The list the person is looking at now: the browser's address (sent as Referer, which
    follows the filters htmx pushed into it) when it is one of our lists on this host, else the
    address the page was rendered with."""
    shown = str(request.POST.get("url", ""))[:1300]
    referer = urlsplit(request.headers.get("Referer", "")[:1300])
    if referer.netloc == request.get_host() and referer.path == urlsplit(shown).path:
        return f"{referer.path}?{referer.query}" if referer.query else referer.path
    return shown


@require_POST
@login_required
def saved_view_save(request: HttpRequest) -> HttpResponse:
    """Save the filters of the list I am looking at under a name, and open them."""
    if not role_of(request.user):
        raise PermissionDenied("your user has no role in Tandem; ask an admin to assign one")
    url = _list_url(request)
    try:
        view = saved_views.saved_view_save(
            user=request.user, name=str(request.POST.get("name", ""))[:200], url=url
        )
    except Refused as exc:
        messages.error(request, exc.message)
        path = urlsplit(url).path  # back to the list, never to another host
        return redirect(path if saved_views.list_path(path) else "home")
    messages.success(request, f"view “{view.name}” saved")
    return redirect(view.url)


@require_POST
@login_required
def saved_view_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete one of my saved views, back to the list it was on."""
    try:
        view = saved_views.saved_view_delete(user=request.user, pk=pk)
    except Refused as exc:
        raise Http404(exc.message) from exc
    messages.success(request, f"saved view “{view.name}” deleted")
    return redirect(view.path)


@login_required
def waiting_badge(request: HttpRequest) -> HttpResponse:
    """The navigation's badge: how many decisions wait for me (loaded after the page, so no
    page pays for it)."""
    count = my_work_selectors.waiting_count(user=request.user)
    return render(request, "console/_waiting_badge.html", {"count": count})


def _list_page(request: HtmxHttpRequest, qs, template: str, extra: dict) -> HttpResponse:  # type: ignore[no-untyped-def]
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, **extra}
    if request.htmx:
        return render(request, f"{template}#rows", context)
    return render(request, template, context)


def _record_filters(
    params: QueryDict, *, states: list[str], sorts: Collection[str]
) -> selectors.RecordFilters:
    """The list filters from the query string; values that are not recognised are dropped."""

    def pick(name: str, allowed: Collection[str]) -> str:
        value = (params.get(name) or "").strip()
        return value if value in allowed else ""

    def match(name: str, pattern: re.Pattern[str]) -> str:
        value = (params.get(name) or "").strip()
        return value if pattern.fullmatch(value) else ""

    return selectors.RecordFilters(
        state=pick("state", states),
        stuck=params.get("stuck") == "1",
        age=pick("age", selectors.AGE_KEYS),
        legal_entity=match("legal_entity", LEGAL_ENTITY_CODE),
        currency=match("currency", CURRENCY),
        account=match("account", ACCOUNT_ID),
        system=pick("system", SYSTEMS),
        query=(params.get("q") or "").strip()[:QUERY_MAX],
        sort=pick("sort", sorts),
    )


def _record_list(  # type: ignore[no-untyped-def]
    request: HtmxHttpRequest, *, model, states, sorts, qs_for, template: str
) -> HttpResponse:
    now = timezone.now()
    filters = _record_filters(request.GET, states=model_states(model), sorts=sorts)
    page = BoundedPaginator(qs_for(filters=filters, now=now), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = [(record, selectors.is_stuck(record, now=now)) for record in page.object_list]
    if model is Order:
        selectors.held_orders_explain([record for record, _ in rows])
    context = {
        "page": page,
        "rows": rows,
        "filters": filters,
        "states": states,
        "sorts": sorts,
        "age_buckets": [(key, label) for key, label, *_ in selectors.AGE_BUCKETS],
        "systems": SYSTEM_CHOICES,
        "legal_entities": LegalEntity.objects.order_by("code").values_list("code", "name"),
    }
    if request.htmx:
        return render(request, f"{template}#rows", context)
    return render(request, template, context)


def model_states(model: type[Order] | type[Contract]) -> list[str]:
    return [value for value, _ in model._meta.get_field("state").choices or []]


ORDER_SORT_LABELS = {
    "-created": "newest first", "created": "oldest first", "in_state": "longest in state",
    "-total": "largest total", "total": "smallest total", "id": "order number",
}  # fmt: skip
CONTRACT_SORT_LABELS = {
    "-created": "newest first", "created": "oldest first", "in_state": "longest in state",
    "end": "ending soonest", "id": "contract number",
}  # fmt: skip


@page_permission("order-list")
def order_list(request: HtmxHttpRequest) -> HttpResponse:
    return _record_list(
        request,
        model=Order,
        states=OrderState.choices,
        sorts=ORDER_SORT_LABELS,
        qs_for=selectors.order_list,
        template="console/order_list.html",
    )


@page_permission("order-list")
def order_detail(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    order = get_object_or_404(
        Order.objects.select_related("account", "legal_entity"), enterprise_id=enterprise_id
    )
    return render(
        request,
        "console/order_detail.html",
        {
            "order": order,
            "lines": order.lines.select_related("product"),
            "history": order.history.select_related("history_user").order_by("-history_date")[:50],
            "can_hold": request.user.has_perm("q2c.hold_order"),
            "has_workflow": WorkflowRun.objects.filter(order=order).exists(),
        },
    )


@require_POST
@page_permission("order-list")
def order_hold_toggle(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    """Put an order on hold or release it, with the operator's reason."""
    if not request.user.has_perm("q2c.hold_order"):
        raise PermissionDenied("you may not hold or release orders")
    order = get_object_or_404(Order, enterprise_id=enterprise_id)
    reason = (request.POST.get("reason") or "").strip()
    actor = Actor.person(request.user)
    try:
        if order.state == OrderState.ON_HOLD:
            release = order_release_for_operator(order=order, actor=actor, reason=reason)
            if release.started is not None:
                messages.success(
                    request,
                    f"{order} released; no workflow had run for it, so quote to cash started "
                    f"(step {release.started.current_step} queued)",
                )
            elif release.paused_at is not None:
                messages.warning(
                    request,
                    f"{order} released, but its workflow is paused at step "
                    f"{release.paused_at.name}, which failed: retry that step to move the order",
                )
            else:
                messages.success(request, f"{order} released")
        else:
            services.order_hold(order=order, actor=actor, reason=reason)
            messages.success(request, f"{order} put on hold")
    except Refused as exc:
        messages.error(request, exc.message)
    if request.POST.get("next") == "timeline":
        return redirect("order-timeline", enterprise_id=order.enterprise_id)
    return redirect("order-detail", enterprise_id=order.enterprise_id)


@page_permission("contract-list")
def contract_list(request: HtmxHttpRequest) -> HttpResponse:
    return _record_list(
        request,
        model=Contract,
        states=ContractState.choices,
        sorts=CONTRACT_SORT_LABELS,
        qs_for=selectors.contract_list,
        template="console/contract_list.html",
    )


@page_permission("invoice-list")
def invoice_list(request: HtmxHttpRequest) -> HttpResponse:
    state = request.GET.get("state") or None
    if state and state not in InvoiceState.values:
        state = None
    return _list_page(
        request,
        selectors.invoice_list(state=state),
        "console/invoice_list.html",
        {"states": InvoiceState.choices, "state": state or ""},
    )


@page_permission("invoice-list")
def invoice_detail(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    """An invoice with its payments (failed ones too), credit notes and refunds."""
    detail = selectors.invoice_detail(enterprise_id=enterprise_id)
    if detail is None:
        raise Http404(f"no invoice {enterprise_id}")
    invoice = detail.invoice
    return render(
        request,
        "console/invoice_detail.html",
        {
            "invoice": invoice,
            "detail": detail,
            "history": invoice.history.select_related("history_user").order_by("-history_date")[
                :50
            ],
        },
    )


# --- The deal timeline ----------------------------------------------------------------------


def _timeline_context(request: HttpRequest, timeline: Timeline) -> dict[str, Any]:
    user = request.user
    return {
        "timeline": timeline,
        "can_retry": user.has_perm("exceptions.retry_exception"),
        "can_replay": user.has_perm("exceptions.request_replay"),
        "can_see_payloads": user.has_perm("orchestration.view_outboundcall"),
        "failed": StepState.FAILED,
    }


def _history_url(record: Order | Contract) -> str:
    """The audit browser filtered to ``record``: who changed what on it."""
    query = urlencode({"model": record._meta.label_lower, "record": record.enterprise_id})
    return f"{reverse('audit-history')}?{query}"


@page_permission("order-list")
def order_timeline(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    order = get_object_or_404(
        Order.objects.select_related("account", "legal_entity", "quote"),
        enterprise_id=enterprise_id,
    )
    context = _timeline_context(request, timeline.order_timeline(order=order))
    context.update(
        record=order,
        order=order,
        stuck=selectors.is_stuck(order, now=timezone.now()),
        can_hold=request.user.has_perm("q2c.hold_order") and order.state in HOLDABLE,
        history_url=_history_url(order),
    )
    return render(request, "console/timeline.html", context)


@page_permission("contract-list")
def contract_timeline(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    contract = get_object_or_404(
        Contract.objects.select_related("account", "legal_entity", "order"),
        enterprise_id=enterprise_id,
    )
    context = _timeline_context(request, timeline.contract_timeline(contract=contract))
    context.update(
        record=contract,
        order=contract.order,
        stuck=selectors.is_stuck(contract, now=timezone.now()),
        can_hold=False,
        can_retry=False,  # steps are retried from the order's timeline
        history_url=_history_url(contract),
        usage_reports=(
            q2c_selectors.contract_usage_reports(contract=contract)
            if request.user.has_perm("q2c.view_usagereport")
            else None
        ),
    )
    return render(request, "console/timeline.html", context)


@page_permission("order-list")
def outbound_call_payload(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The redacted request and response bodies of one call, loaded on demand."""
    if not request.user.has_perm("orchestration.view_outboundcall"):
        raise PermissionDenied("you may not read outbound call payloads")
    call = get_object_or_404(OutboundCall, pk=pk)
    template = "console/timeline.html#payload" if request.htmx else "console/outbound_call.html"
    return render(request, template, {"call": call})


@require_POST
@page_permission("order-list")
def order_step_retry(request: HttpRequest, enterprise_id: str, step_pk: int) -> HttpResponse:
    """Run a failed step of the order's workflow again (``step_retry_for_operator`` decides
    how: through its open exception when it has one, else through the engine)."""
    if not request.user.has_perm("exceptions.retry_exception"):
        raise PermissionDenied("you may not retry steps")
    order = get_object_or_404(Order, enterprise_id=enterprise_id)
    step = get_object_or_404(StepRun, pk=step_pk, run__order=order)
    try:
        step_retry_for_operator(
            step=step,
            actor=Actor.person(request.user),
            reason=(request.POST.get("reason") or "").strip(),
        )
        messages.success(request, f"step {step.name} queued to run again")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("order-timeline", enterprise_id=order.enterprise_id)


# --- The dashboard --------------------------------------------------------------------------

CHART_LABEL_WIDTH = 170
CHART_BAR_WIDTH = 300
CHART_ROW_HEIGHT = 22


def stacked_bars(rows: list[dashboard_selectors.Row]) -> dict[str, Any]:
    """Geometry of a server-rendered SVG bar chart: one bar per row, a segment per cell."""
    largest = max((row.total for row in rows), default=0) or 1
    bars = []
    for i, row in enumerate(rows):
        x = float(CHART_LABEL_WIDTH)
        segments = []
        for j, cell in enumerate(row.cells):
            width = CHART_BAR_WIDTH * cell.count / largest
            if cell.count:
                segments.append({"x": round(x, 1), "width": round(width, 1), "cell": cell, "n": j})
            x += width
        bars.append(
            {"y": i * CHART_ROW_HEIGHT, "row": row, "segments": segments, "end": round(x + 4, 1)}
        )
    return {
        "bars": bars,
        "height": len(rows) * CHART_ROW_HEIGHT,
        "width": CHART_LABEL_WIDTH + CHART_BAR_WIDTH + 50,
        "label_width": CHART_LABEL_WIDTH - 8,
    }


@page_permission("dashboard")
def dashboard(request: HttpRequest) -> HttpResponse:
    """Stuck orders, open exceptions, SLA breaches, connector health, cycle time and the
    invoice exception rate; each section only for the roles that may read what it shows."""
    user = request.user
    now = timezone.now()
    context: dict[str, Any] = {"now": now, "age_buckets": selectors.AGE_BUCKETS}
    stuck = dashboard_selectors.stuck_orders(now=now)
    context["stuck"] = {
        "rows": stuck,
        "chart": stacked_bars(stuck),
        "total": sum(row.total for row in stuck),
        "sla": {
            state: int(sla.total_seconds() // 60)
            for state, sla in selectors.state_sla(Order).items()
        },
    }
    context["cycle_times"] = dashboard_selectors.cycle_times(now=now)
    if user.has_perm("q2c.view_contract"):
        context["stuck_contracts"] = dashboard_selectors.stuck_contracts_count(now=now)
    if user.has_perm("exceptions.view_operationalexception"):
        rows, overdue = dashboard_selectors.open_exceptions(now=now)
        context["exceptions"] = {
            "rows": rows,
            "chart": stacked_bars(rows),
            "overdue": overdue,
            "overdue_total": sum(overdue.values()),
            "total": sum(row.total for row in rows),
        }
    if user.has_perm("orchestration.view_circuitbreaker") and user.has_perm(
        "orchestration.view_outboundcall"
    ):
        context["health"] = dashboard_selectors.connector_health(now=now)
    if user.has_perm("q2c.view_invoice") and user.has_perm("exceptions.view_operationalexception"):
        context["invoice_rate"] = dashboard_selectors.invoice_exception_rate(now=now)
    if user.has_perm("orchestration.view_driftitem"):
        context["effort"] = reconciliation_effort(now=now)
    return render(request, "console/dashboard.html", context)
