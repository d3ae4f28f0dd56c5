"""Reads for finance's reconciliation pages and the ``reconcile`` command."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth

from masterdata.models import ExternalId
from orchestration.reconciliation.models import (
    DriftItem,
    DriftState,
    DriftType,
    ReconciledSystem,
    ReconciliationRun,
)
from q2c.models import Invoice, InvoiceState, Order

# Drift ageing buckets: (label, from, to) in days.
AGE_BUCKETS: list[tuple[str, int, int | None]] = [
    ("< 1 day", 0, 1),
    ("1-7 days", 1, 7),
    ("7-30 days", 7, 30),
    ("> 30 days", 30, None),
]


def runs_report(runs: Iterable[ReconciliationRun]) -> dict[str, Any]:
    """The runs and the drift they found, as ``manage.py reconcile --json`` prints them:
    ``found`` is a list of ``{type, system, record}`` (the Tandem reference, or the system's
    id when Tandem has no record)."""
    runs = list(runs)
    items = DriftItem.objects.filter(last_run__in=runs).order_by(
        "system", "drift_type", "tandem_ref", "remote_ref"
    )
    return {
        "runs": [
            {
                "id": run.pk,
                "system": run.system,
                "state": run.state,
                "since": run.since.isoformat() if run.since else None,
                "tandem_rows": run.tandem_rows,
                "remote_rows": run.remote_rows,
                "found": run.found,
                "opened": run.opened,
                "closed": run.closed,
                "error": run.error,
            }
            for run in runs
        ],
        "found": [
            {
                "type": item.drift_type,
                "system": item.system,
                "record": item.tandem_ref or item.remote_ref,
            }
            for item in items
        ],
    }


@dataclass(frozen=True)
class DriftFilters:
    state: str = DriftState.OPEN
    system: str = ""
    drift_type: str = ""
    age: str = ""  # an AGE_BUCKETS label index ("0".."3")
    min_value: Decimal | None = None
    currency: str = ""
    legal_entity: str = ""
    q: str = ""

    @classmethod
    def from_query(cls, query: Any) -> DriftFilters:
        """Filters from a query string; values that do not fit are dropped, never a 500."""
        state = query.get("state", DriftState.OPEN)
        system = query.get("system", "")
        drift_type = query.get("type", "")
        age = query.get("age", "")
        try:
            min_value = Decimal(query.get("min", "")) if query.get("min") else None
            if min_value is not None and not min_value.is_finite():
                min_value = None
        except ArithmeticError:
            min_value = None
        return cls(
            state=state if state in [*DriftState.values, "all"] else DriftState.OPEN,
            system=system if system in ReconciledSystem.values else "",
            drift_type=drift_type if drift_type in DriftType.values else "",
            age=age if age in {str(n) for n in range(len(AGE_BUCKETS))} else "",
            min_value=min_value,
            currency=query.get("currency", "")[:3].upper(),
            legal_entity=query.get("entity", "")[:20],
            q=query.get("q", "").strip()[:100],
        )

    def query_string(self) -> dict[str, str]:
        values = {
            "state": self.state, "system": self.system, "type": self.drift_type, "age": self.age,
            "min": "" if self.min_value is None else str(self.min_value),
            "currency": self.currency, "entity": self.legal_entity, "q": self.q,
        }  # fmt: skip
        return {key: value for key, value in values.items() if value}


def drift_list(filters: DriftFilters, *, now: dt.datetime) -> QuerySet[DriftItem]:
    """Drift items matching ``filters``, largest difference first."""
    items = DriftItem.objects.all()
    if filters.state != "all":
        items = items.filter(state=filters.state)
    if filters.system:
        items = items.filter(system=filters.system)
    if filters.drift_type:
        items = items.filter(drift_type=filters.drift_type)
    if filters.age:
        _, low, high = AGE_BUCKETS[int(filters.age)]
        items = items.filter(first_seen_at__lte=now - dt.timedelta(days=low))
        if high is not None:
            items = items.filter(first_seen_at__gt=now - dt.timedelta(days=high))
    if filters.min_value is not None:
        items = items.filter(difference__gte=filters.min_value)
    if filters.currency:
        items = items.filter(currency=filters.currency)
    if filters.legal_entity:
        items = items.filter(legal_entity=filters.legal_entity)
    if filters.q:
        items = items.filter(Q(tandem_ref__iexact=filters.q) | Q(remote_ref__iexact=filters.q))
    return items.order_by("-difference", "-first_seen_at", "-id")


@dataclass
class DriftSummary:
    by_type: list[tuple[str, str, int, Decimal]] = field(default_factory=list)
    by_age: list[tuple[int, str, int]] = field(default_factory=list)
    open_total: int = 0


def drift_summary(*, now: dt.datetime) -> DriftSummary:
    """Open drift by type (count and value) and by age bucket: two aggregate queries."""
    summary = DriftSummary()
    labels = dict(DriftType.choices)
    open_items = DriftItem.objects.filter(state=DriftState.OPEN)
    for row in (
        open_items.values("drift_type")
        .annotate(n=Count("id"), value=Sum("difference"))
        .order_by("drift_type")
    ):
        summary.by_type.append(
            (row["drift_type"], labels.get(row["drift_type"], row["drift_type"]), row["n"],
             row["value"] or Decimal(0))
        )  # fmt: skip
    summary.by_age = _open_by_age(now=now)
    summary.open_total = sum(n for _, _, n, _ in summary.by_type)
    return summary


def _open_by_age(*, now: dt.datetime) -> list[tuple[int, str, int]]:
    """Open drift per age bucket: one aggregate query."""
    counts = DriftItem.objects.filter(state=DriftState.OPEN).aggregate(
        **{
            f"b{index}": Count(
                "id",
                filter=Q(first_seen_at__lte=now - dt.timedelta(days=low))
                & (Q() if high is None else Q(first_seen_at__gt=now - dt.timedelta(days=high))),
            )
            for index, (_, low, high) in enumerate(AGE_BUCKETS)
        }
    )
    return [
        (index, label, counts[f"b{index}"] or 0) for index, (label, _, _) in enumerate(AGE_BUCKETS)
    ]


def runs_recent(limit: int = 10) -> list[ReconciliationRun]:
    return list(ReconciliationRun.objects.order_by("-started_at", "-id")[:limit])


@dataclass(frozen=True)
class BookRow:
    """One period, legal entity and currency: what was booked, billed and posted to the ERP,
    and the open drift that explains a difference."""

    period: dt.date
    legal_entity: str
    currency: str
    bookings: Decimal
    billings: Decimal
    erp: Decimal
    drift: Decimal


def books(*, months: int, now: dt.datetime) -> list[BookRow]:
    """Bookings (orders accepted in the month), billings (invoices billing issued, not void)
    and ERP postings (invoices the ERP issued, not void), per month, legal entity and
    currency, for the last ``months``; four aggregate queries."""
    start = (now.date().replace(day=1) - dt.timedelta(days=31 * (months - 1))).replace(day=1)
    cells: dict[tuple[dt.date, str, str], dict[str, Decimal]] = {}

    def add(rows: Iterable[dict[str, Any]], column: str) -> None:
        for row in rows:
            period = row["period"]
            period = period.date() if isinstance(period, dt.datetime) else period
            key = (period, row["entity"] or "", row["currency"] or "")
            cells.setdefault(key, {})[column] = row["total"] or Decimal(0)

    add(
        Order.objects.filter(accepted_at__date__gte=start)
        .annotate(period=TruncMonth("accepted_at"))
        .values("period", "currency", entity=F("legal_entity__code"))
        .annotate(total=Sum("total_amount"))
        .order_by(),
        "bookings",
    )
    for system, column in (("billing", "billings"), ("erp", "erp")):
        mirrored = ExternalId.objects.filter(system=system, object_type="invoice").values(
            "object_id"
        )
        add(
            Invoice.objects.filter(issue_date__gte=start, pk__in=mirrored)
            .exclude(state=InvoiceState.VOID)
            .annotate(period=TruncMonth("issue_date"))
            .values("period", "currency", entity=F("legal_entity__code"))
            .annotate(total=Sum("total_amount"))
            .order_by(),
            column,
        )
    add(
        DriftItem.objects.filter(state=DriftState.OPEN, first_seen_at__date__gte=start)
        .annotate(period=TruncMonth("first_seen_at"))
        .values("period", "currency", entity=F("legal_entity"))
        .annotate(total=Sum("difference"))
        .order_by(),
        "drift",
    )
    zero = Decimal(0)
    return [
        BookRow(
            period=period,
            legal_entity=entity,
            currency=currency,
            bookings=values.get("bookings", zero),
            billings=values.get("billings", zero),
            erp=values.get("erp", zero),
            drift=values.get("drift", zero),
        )
        for (period, entity, currency), values in sorted(cells.items())
    ]


@dataclass(frozen=True)
class Effort:
    """Reconciliation effort for the dashboard: open drift by age and value, and how many
    items were closed (resolved or cleared) and how long they stayed open, per window."""

    open_by_age: list[tuple[int, str, int]]
    open_value: list[tuple[str, Decimal]]  # (currency, summed difference)
    closed: list[tuple[int, int, dt.timedelta | None]]  # (days, items, average time open)


def reconciliation_effort(*, now: dt.datetime) -> Effort:
    """Four aggregate queries."""
    from django.db.models import Avg, DurationField, ExpressionWrapper

    open_items = DriftItem.objects.filter(state=DriftState.OPEN)
    value = [
        (row["currency"], row["total"] or Decimal(0))
        for row in open_items.values("currency")
        .annotate(total=Sum("difference"))
        .order_by("currency")
    ]
    time_open = ExpressionWrapper(F("closed_at") - F("first_seen_at"), output_field=DurationField())
    closed = []
    for days in (30, 90):
        figures = DriftItem.objects.filter(closed_at__gte=now - dt.timedelta(days=days)).aggregate(
            n=Count("id"), avg=Avg(time_open)
        )
        closed.append((days, figures["n"], figures["avg"]))
    return Effort(open_by_age=_open_by_age(now=now), open_value=value, closed=closed)
