"""Reads for the dashboard: each figure is one aggregate query, whatever the number of rows.

Counts use conditional aggregation (``COUNT(*) FILTER (WHERE ...)``) over the indexed columns
(``state, state_changed_at``, ``created_at``, ``activated_at``). Percentiles use PostgreSQL's
``percentile_cont``; other databases (the SQLite demo) get the same interpolated value from
two ordered ``LIMIT/OFFSET`` reads per percentile.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Case,
    CharField,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)

from console.selectors.records import AGE_BUCKETS, state_sla
from core.problems import Team
from core.records import SYSTEM_CHOICES
from exceptions.models import OPEN_STATES, OperationalException
from orchestration.models import OutboundCall, OutboundOutcome
from orchestration.workflows.models import CircuitBreaker, CircuitState
from q2c.models import Contract, Invoice, Order, OrderState

CONNECTOR_WINDOW = dt.timedelta(hours=1)
CYCLE_WINDOWS = (7, 30)  # days
INVOICE_WINDOW = dt.timedelta(days=30)


class Percentile(Aggregate):  # type: ignore[type-arg]
    """PostgreSQL's continuous percentile of an ordered expression."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


class Percentiles(Aggregate):  # type: ignore[type-arg]
    """Several continuous percentiles from one sort (a float array)."""

    function = "PERCENTILE_CONT"
    template = (
        "%(function)s(ARRAY[%(fractions)s]::float8[]) WITHIN GROUP (ORDER BY %(expressions)s)"
    )

    def __init__(self, expression: Any, fractions: tuple[float, ...], **extra: Any) -> None:
        from django.contrib.postgres.fields import ArrayField

        super().__init__(
            expression,
            fractions=", ".join(repr(float(f)) for f in fractions),
            output_field=ArrayField(FloatField()),
            **extra,
        )


def native_percentiles() -> bool:
    """Whether the database computes percentiles itself (PostgreSQL's ``percentile_cont``)."""
    return connection.vendor == "postgresql"


def _seconds(value: Any) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def percentile_by_offset(qs: QuerySet[Any], field: str, fraction: float) -> float | None:
    """``percentile_cont`` for databases without it: the two neighbouring ordered values,
    interpolated (two queries: a count and a two-row slice)."""
    n = qs.count()
    if n == 0:
        return None
    position = fraction * (n - 1)
    low = math.floor(position)
    values = [_seconds(v) for v in qs.order_by(field).values_list(field, flat=True)[low : low + 2]]
    if len(values) == 1:
        return values[0]
    return values[0] + (values[1] - values[0]) * (position - low)


# --- Stuck orders and contracts -------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    key: str
    label: str
    count: int
    href: str


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    cells: list[Cell]
    total: int
    href: str


def age_bucket(field: str, *, now: dt.datetime) -> Case:
    """The age bucket of ``field`` (a past timestamp) as a SQL CASE expression."""
    whens = []
    for key, _label, low, high in AGE_BUCKETS:
        q = Q(**{f"{field}__lte": now - low})
        if high is not None:
            q &= Q(**{f"{field}__gt": now - high})
        whens.append(When(q, then=Value(key)))
    return Case(*whens, default=Value(""), output_field=CharField())


def stuck_by_state_and_age(model: type[Order] | type[Contract], *, now: dt.datetime) -> dict:  # type: ignore[type-arg]
    """{(state, age bucket): n} of the stuck records of ``model`` (one query).

    One ``GROUP BY`` per state with an SLA, joined by ``UNION ALL``: each reads only its
    state's stuck entries of the ``(state, state_changed_at)`` index, without the table (an
    OR over the states made PostgreSQL fetch every stuck row from the heap: 30k orders,
    12k pages, 100-400 ms).
    """
    rows = stuck_counts_query(model, now=now)
    return {(row["state"], row["bucket"]): row["n"] for row in rows} if rows is not None else {}


def stuck_counts_query(
    model: type[Order] | type[Contract], *, now: dt.datetime
) -> QuerySet[Any, Any] | None:
    """The query behind ``stuck_by_state_and_age`` (None when no state has an SLA)."""
    parts = [
        model.objects.filter(state=state, state_changed_at__lt=now - sla)
        .annotate(bucket=age_bucket("state_changed_at", now=now))
        .values("state", "bucket")
        .annotate(n=Count("*"))
        .order_by()
        for state, sla in state_sla(model).items()
    ]
    if not parts:
        return None
    return parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]


def stuck_orders(*, now: dt.datetime) -> list[Row]:
    """Stuck orders by state and time in state (one query)."""
    labels = dict(OrderState.choices)
    states = [state for state in labels if state in state_sla(Order)]
    found = stuck_by_state_and_age(Order, now=now)
    rows = []
    for state in states:
        cells = [
            Cell(
                key=key,
                label=label,
                count=found.get((state, key), 0),
                href=f"/orders/?state={state}&stuck=1&age={key}",
            )
            for key, label, *_rest in AGE_BUCKETS
        ]
        rows.append(
            Row(
                key=state,
                label=labels[state],
                cells=cells,
                total=sum(c.count for c in cells),
                href=f"/orders/?state={state}&stuck=1",
            )
        )
    return rows


def stuck_contracts_count(*, now: dt.datetime) -> int:
    """How many contracts have been in their state longer than its SLA at ``now``."""
    return sum(stuck_by_state_and_age(Contract, now=now).values())


# --- Exceptions -----------------------------------------------------------------------------


def open_exceptions_query(*, now: dt.datetime) -> QuerySet[Any, dict[str, Any]]:
    """Open exceptions counted by team and age bucket, with the overdue ones: every column
    it reads is in exception_open_team_idx, so the index alone answers."""
    return (
        OperationalException.objects.filter(state__in=OPEN_STATES)
        .annotate(bucket=age_bucket("created_at", now=now))
        .values("owner_team", "bucket")
        .annotate(n=Count("*"), late=Count("created_at", filter=Q(sla_due_at__lt=now)))
        .order_by()
    )


def open_exceptions(*, now: dt.datetime) -> tuple[list[Row], dict[str, int]]:
    """Open exceptions by owner team and age, and each team's overdue count (one query)."""
    counts: dict[tuple[str, str], int] = {}
    overdue: dict[str, int] = {team: 0 for team in Team.values}
    for row in open_exceptions_query(now=now):
        counts[(row["owner_team"], row["bucket"])] = row["n"]
        overdue[row["owner_team"]] = overdue.get(row["owner_team"], 0) + row["late"]
    rows = []
    for team, label in Team.choices:
        cells = [
            Cell(key=key, label=age_label, count=counts.get((team, key), 0),
                 href=f"/exceptions/?owner_team={team}")
            for key, age_label, *_rest in AGE_BUCKETS
        ]  # fmt: skip
        rows.append(
            Row(
                key=team,
                label=label,
                cells=cells,
                total=sum(c.count for c in cells),
                href=f"/exceptions/?owner_team={team}",
            )
        )
    return rows, {team: overdue.get(team, 0) for team in Team.values}


# --- Connector health -----------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    system: str
    label: str
    circuit: str
    consecutive_failures: int
    calls: int
    errors: int
    throttled: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


def connector_health(*, now: dt.datetime) -> list[Health]:
    """Per system: its circuit breaker, and over the last hour its calls, failures,
    throttled calls (429) and p95 latency (one query on PostgreSQL)."""
    breakers = {b.system: b for b in CircuitBreaker.objects.all()}
    recent = OutboundCall.objects.filter(created_at__gte=now - CONNECTOR_WINDOW)
    aggregates: dict[str, Any] = {
        "calls": Count("pk"),
        "errors": Count("pk", filter=~Q(outcome=OutboundOutcome.OK)),
        "throttled": Count("pk", filter=Q(status_code=429)),
    }
    if native_percentiles():
        aggregates["p95"] = Percentile("latency_ms", 0.95)
    found = {
        row["system"]: row for row in recent.values("system").annotate(**aggregates).order_by()
    }
    result = []
    for system, label in SYSTEM_CHOICES:
        row: dict[str, Any] = dict(found.get(system, {}))
        p95 = row.get("p95")
        if row and not native_percentiles():
            p95 = percentile_by_offset(recent.filter(system=system), "latency_ms", 0.95)
        breaker = breakers.get(system)
        result.append(
            Health(
                system=system,
                label=label,
                circuit=breaker.state if breaker else CircuitState.CLOSED,
                consecutive_failures=breaker.consecutive_failures if breaker else 0,
                calls=row.get("calls", 0),
                errors=row.get("errors", 0),
                throttled=row.get("throttled", 0),
                p95_ms=p95,
            )
        )
    return result


# --- Cycle time and invoice exceptions ------------------------------------------------------


@dataclass(frozen=True)
class CycleTime:
    days: int
    orders: int
    p50_seconds: float | None
    p95_seconds: float | None


def cycle_times(*, now: dt.datetime) -> list[CycleTime]:
    """Created → active, over orders activated in the last 7 and 30 days."""
    longest = max(CYCLE_WINDOWS)
    activated = Order.objects.filter(activated_at__gte=now - dt.timedelta(days=longest))
    cycle = ExpressionWrapper(F("activated_at") - F("created_at"), output_field=DurationField())
    windows = {days: Q(activated_at__gte=now - dt.timedelta(days=days)) for days in CYCLE_WINDOWS}
    # Counted on created_at (never null) so order_activated_cycle_idx alone answers.
    aggregates: dict[str, Any] = {
        f"n{d}": Count("created_at", filter=q) for d, q in windows.items()
    }
    if native_percentiles():
        from django.db.models import Func

        epoch = Func(
            cycle, template="EXTRACT(EPOCH FROM %(expressions)s)", output_field=FloatField()
        )
        for days, q in windows.items():
            aggregates[f"p_{days}"] = Percentiles(epoch, (0.5, 0.95), filter=q)
    found = activated.aggregate(**aggregates)
    result = []
    for days, q in windows.items():
        if native_percentiles():
            p50, p95 = found[f"p_{days}"] or (None, None)
        elif found[f"n{days}"]:
            rows = activated.filter(q).annotate(cycle=cycle)
            p50 = percentile_by_offset(rows, "cycle", 0.5)
            p95 = percentile_by_offset(rows, "cycle", 0.95)
        else:
            p50 = p95 = None
        result.append(
            CycleTime(days=days, orders=found[f"n{days}"], p50_seconds=p50, p95_seconds=p95)
        )
    return result


@dataclass(frozen=True)
class InvoiceExceptionRate:
    invoices: int
    with_exception: int

    @property
    def rate(self) -> float | None:
        return self.with_exception / self.invoices if self.invoices else None


def invoice_exception_rate(*, now: dt.datetime) -> InvoiceExceptionRate:
    """Of the invoices created in the last 30 days, how many belong to an order that had an
    exception (open or closed) at any time (one query)."""
    # A correlated EXISTS: the window's invoices (index-only on invoice_created_order_idx)
    # each probe the exceptions' order index; an IN hashed all 200k exceptions first (300 ms).
    had_exception = Exists(OperationalException.objects.filter(order_id=OuterRef("order_id")))
    found = Invoice.objects.filter(created_at__gte=now - INVOICE_WINDOW).aggregate(
        invoices=Count("created_at"), with_exception=Count("created_at", filter=had_exception)
    )
    return InvoiceExceptionRate(invoices=found["invoices"], with_exception=found["with_exception"])
