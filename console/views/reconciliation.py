"""Finance's reconciliation pages: runs, drift (filters, drill-down, resolve, bulk resolve,
CSV) and bookings vs billings vs ERP. Every view checks its permission on the server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.audit import Actor
from core.errors import Refused
from core.exports import csv_lines
from core.pagination import BoundedPaginator
from core.params import id_from
from core.web import PAGE_SIZE, HtmxHttpRequest, page_permission
from orchestration.reconciliation import selectors
from orchestration.reconciliation.models import (
    DriftItem,
    DriftResolution,
    DriftState,
    DriftType,
    ReconciledSystem,
)
from orchestration.reconciliation.tasks import reconcile as reconcile_task


@page_permission("reconciliation")
def drift_page(request: HtmxHttpRequest) -> HttpResponse:
    now = timezone.now()
    filters = selectors.DriftFilters.from_query(request.GET)
    items = selectors.drift_list(filters, now=now).select_related("first_run", "last_run")
    page = BoundedPaginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    context: dict[str, Any] = {
        "page": page, "filters": filters, "now": now,
        "query": filters.query_string(),
        "states": [*DriftState.choices, ("all", "Any")],
        "types": DriftType.choices, "systems": ReconciledSystem.choices,
        "ages": [(str(i), label) for i, (label, _, _) in enumerate(selectors.AGE_BUCKETS)],
        "codes": DriftResolution.choices,
        "can_resolve": request.user.has_perm("orchestration.resolve_drift"),
        "can_run": request.user.has_perm("orchestration.run_reconciliation"),
    }  # fmt: skip
    if request.htmx:
        return render(request, "reconciliation/drift_list.html#rows", context)
    summary = selectors.drift_summary(now=now)
    context.update(summary=summary, runs=selectors.runs_recent(), age_chart=_bars(summary.by_age))
    return render(request, "reconciliation/drift_list.html", context)


def _bars(rows: list[tuple[int, str, int]]) -> dict[str, Any]:
    """Horizontal bars, one per age bucket, drawn on the server."""
    top = max((n for _, _, n in rows), default=0) or 1
    bars = [
        {
            "index": index,
            "label": label,
            "n": n,
            "y": 24 * position,
            "width": round(300 * n / top),
        }
        for position, (index, label, n) in enumerate(rows)
    ]
    return {"bars": bars, "height": 24 * len(rows), "width": 480}


@login_required
@permission_required("orchestration.view_driftitem", raise_exception=True)
def drift_detail(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(DriftItem.objects.select_related("first_run", "last_run"), pk=pk)
    tandem = sorted(item.tandem_record.items())
    remote = sorted(item.remote_record.items())
    names = sorted({name for name, _ in tandem} | {name for name, _ in remote})
    sides = [
        (name, item.tandem_record.get(name, ""), item.remote_record.get(name, "")) for name in names
    ]
    return render(
        request,
        "reconciliation/drift_detail.html",
        {
            "item": item, "sides": sides, "codes": DriftResolution.choices,
            "history": item.history.select_related("history_user").order_by("-history_id")[:20],
            "can_resolve": request.user.has_perm("orchestration.resolve_drift"),
            "age": item.age(),
        },
    )  # fmt: skip


@require_POST
@login_required
@permission_required("orchestration.resolve_drift", raise_exception=True)
def drift_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    from orchestration.reconciliation.services import drift_resolve as resolve

    item = get_object_or_404(DriftItem, pk=pk)
    try:
        resolve(
            item=item, code=request.POST.get("code", ""), actor=Actor.person(request.user),
            reason=request.POST.get("reason", ""),
        )  # fmt: skip
    except Refused as exc:
        messages.error(request, str(exc))
        return redirect("drift-detail", pk=pk)
    messages.success(request, f"DRIFT-{pk} resolved")
    return redirect("drift-detail", pk=pk)


@require_POST
@login_required
@permission_required("orchestration.resolve_drift", raise_exception=True)
def drift_bulk_resolve(request: HttpRequest) -> HttpResponse:
    """Resolve the selected items with one code and reason; answers the per-item report."""
    from orchestration.reconciliation.services import drift_resolve_bulk

    ids = [pk for value in request.POST.getlist("item") if (pk := id_from(value)) is not None]
    ids = ids[:500]
    if not ids:
        messages.error(request, "select the drift items to resolve")
        return redirect("reconciliation")
    try:
        report = drift_resolve_bulk(
            item_ids=ids, code=request.POST.get("code", ""),
            actor=Actor.person(request.user), reason=request.POST.get("reason", ""),
        )  # fmt: skip
    except Refused as exc:
        messages.error(request, str(exc))
        return redirect("reconciliation")
    return render(
        request,
        "reconciliation/bulk_report.html",
        {"report": report, "ok": sum(1 for line in report if line.ok)},
    )


@require_POST
@login_required
@permission_required("orchestration.run_reconciliation", raise_exception=True)
def run_start(request: HttpRequest) -> HttpResponse:
    """The finance ops button: a run of the chosen system (or all) on a worker."""
    system = request.POST.get("system", "all")
    if system not in [*ReconciledSystem.values, "all"]:
        messages.error(request, f"{system!r} is not a system Tandem reconciles")
        return redirect("reconciliation")
    full = request.POST.get("full") == "1"
    transaction.on_commit(lambda: reconcile_task.delay(system=system, full=full))
    messages.success(
        request,
        f"A {'full' if full else 'incremental'} reconciliation of {system} was started; "
        "its run appears below when a worker has finished it.",
    )
    return redirect("reconciliation")


@page_permission("reconciliation-export")
def drift_export(request: HttpRequest) -> StreamingHttpResponse:
    now = timezone.now()
    filters = selectors.DriftFilters.from_query(request.GET)
    items = selectors.drift_list(filters, now=now)

    def rows() -> Iterator[Iterable[object]]:
        yield [
            "id", "state", "system", "record type", "drift type", "Tandem record",
            "system record", "legal entity", "currency", "Tandem amount", "system amount",
            "difference", "first seen", "last seen", "age (days)", "owner", "exception",
            "resolution", "detail",
        ]  # fmt: skip
        for item in items.iterator(chunk_size=1000):
            yield (
                    f"DRIFT-{item.pk}", item.state, item.system, item.object_type,
                    item.drift_type, item.tandem_ref, item.remote_ref, item.legal_entity,
                    item.currency, item.tandem_amount, item.remote_amount, item.difference,
                    item.first_seen_at.isoformat(), item.last_seen_at.isoformat(),
                    item.age(now).days, item.owner_team, item.exception_ref,
                    item.resolution_code, item.detail,
            )  # fmt: skip

    response = StreamingHttpResponse(csv_lines(rows()), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="drift.csv"'
    return response


def _books_chart(rows: list[selectors.BookRow], currency: str) -> dict[str, Any]:
    """Grouped bars per month (bookings, billings, ERP) for one currency, drawn on the
    server; heights scale to the largest figure."""
    months: dict[Any, dict[str, Decimal]] = {}
    for row in rows:
        if row.currency != currency:
            continue
        cell = months.setdefault(row.period, {"bookings": Decimal(0), "billings": Decimal(0),
                                              "erp": Decimal(0)})  # fmt: skip
        cell["bookings"] += row.bookings
        cell["billings"] += row.billings
        cell["erp"] += row.erp
    top = max((v for cell in months.values() for v in cell.values()), default=Decimal(0))
    top = top or Decimal(1)
    groups = []
    for index, (period, cell) in enumerate(sorted(months.items())):
        x = 40 + index * 90
        bars = []
        for n, name in enumerate(("bookings", "billings", "erp")):
            height = int(160 * cell[name] / top)
            bars.append({"n": n, "name": name, "x": x + n * 22, "y": 180 - height,
                         "height": height, "value": cell[name]})  # fmt: skip
        groups.append({"label": period.strftime("%Y-%m"), "x": x, "bars": bars})
    return {"groups": groups, "width": max(40 + 90 * len(groups), 200), "height": 200}


@page_permission("reconciliation-books")
def books_page(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    now = timezone.now()
    rows = selectors.books(months=6, now=now)
    currencies = sorted({row.currency for row in rows})
    currency = request.GET.get("currency", "")
    if currency not in currencies:
        currency = currencies[0] if currencies else ""
    if request.GET.get("format") == "csv":
        response = StreamingHttpResponse(
            csv_lines(
                iter(
                    [
                        [
                            "period",
                            "legal entity",
                            "currency",
                            "bookings",
                            "billings",
                            "ERP",
                            "open drift",
                        ]
                    ]
                    + [
                        [
                            row.period.isoformat(),
                            row.legal_entity,
                            row.currency,
                            row.bookings,
                            row.billings,
                            row.erp,
                            row.drift,
                        ]
                        for row in rows
                    ]
                )
            ),
            content_type="text/csv",
        )
        response["Content-Disposition"] = 'attachment; filename="books.csv"'
        return response
    return render(
        request,
        "reconciliation/books.html",
        {
            "rows": rows, "currencies": currencies, "currency": currency,
            "chart": _books_chart(rows, currency), "drift_url": reverse("reconciliation"),
        },
    )  # fmt: skip
