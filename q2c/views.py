"""Console pages for the canonical records. Every view checks its permission on the server."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_fsm import ConcurrentTransition
from django_htmx.middleware import HtmxDetails

from q2c import selectors, services
from q2c.audit import Actor
from q2c.errors import TransitionRefused
from q2c.models import Contract, ContractState, Invoice, InvoiceState, Order, OrderState
from q2c.navigation import PAGE_BY_NAME
from q2c.pagination import BoundedPaginator
from q2c.roles import role_of

PAGE_SIZE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def page_permission(url_name: str):  # type: ignore[no-untyped-def]
    """Require the permission the navigation table gives the page (403, never a redirect)."""
    perm = PAGE_BY_NAME[url_name].permission

    def decorate(view):  # type: ignore[no-untyped-def]
        view = permission_required(perm, raise_exception=True)(view) if perm else view
        return login_required(view)

    return decorate


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
    return render(request, "q2c/home.html", {"role": role, "panels": panels})


def _list_page(request: HtmxHttpRequest, qs, template: str, extra: dict) -> HttpResponse:  # type: ignore[no-untyped-def]
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, **extra}
    if request.htmx:
        return render(request, f"{template}#rows", context)
    return render(request, template, context)


@page_permission("order-list")
def order_list(request: HtmxHttpRequest) -> HttpResponse:
    state = request.GET.get("state") or None
    if state and state not in OrderState.values:
        state = None
    query = (request.GET.get("q") or "").strip() or None
    return _list_page(
        request,
        selectors.order_list(state=state, query=query),
        "q2c/order_list.html",
        {"states": OrderState.choices, "state": state or "", "q": query or ""},
    )


@page_permission("order-list")
def order_detail(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    order = get_object_or_404(
        Order.objects.select_related("account", "legal_entity"), enterprise_id=enterprise_id
    )
    return render(
        request,
        "q2c/order_detail.html",
        {
            "order": order,
            "lines": order.lines.select_related("product"),
            "history": order.history.select_related("history_user").order_by("-history_date")[:50],
            "can_hold": request.user.has_perm("q2c.hold_order"),
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
            services.order_release(order=order, actor=actor, reason=reason)
            messages.success(request, f"{order} released")
        else:
            services.order_hold(order=order, actor=actor, reason=reason)
            messages.success(request, f"{order} put on hold")
    except (TransitionRefused, ValidationError, ValueError, ConcurrentTransition) as exc:
        messages.error(request, str(exc))
    return redirect("order-detail", enterprise_id=order.enterprise_id)


@page_permission("contract-list")
def contract_list(request: HtmxHttpRequest) -> HttpResponse:
    state = request.GET.get("state") or None
    if state and state not in ContractState.values:
        state = None
    return _list_page(
        request,
        selectors.contract_list(state=state),
        "q2c/contract_list.html",
        {"states": ContractState.choices, "state": state or ""},
    )


@page_permission("invoice-list")
def invoice_list(request: HtmxHttpRequest) -> HttpResponse:
    state = request.GET.get("state") or None
    if state and state not in InvoiceState.values:
        state = None
    return _list_page(
        request,
        selectors.invoice_list(state=state),
        "q2c/invoice_list.html",
        {"states": InvoiceState.choices, "state": state or ""},
    )
