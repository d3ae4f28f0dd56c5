"""Problems a person must look at, and the port through which any app raises one.

A workflow step's failure reaches the exception queue through the engine's observers; work
outside a workflow (a merge pushed to the CRM, a reconciliation, a sweeper giving up) raises
a ``Problem`` here. The ``exceptions`` app registers the sink at start-up, so no app below it
imports the queue; with no sink registered a problem is refused loudly, never dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.db import models

if TYPE_CHECKING:
    from core.audit import Actor


class Category(models.TextChoices):
    VALIDATION = "validation", "Validation"
    MAPPING = "mapping", "Product mapping"
    MASTER_DATA = "master_data", "Master data"
    TAX = "tax", "Tax"
    DOWNSTREAM_API = "downstream_api", "Downstream API"
    DUPLICATE_EVENT = "duplicate_event", "Duplicate event"
    CONFIGURATION = "configuration", "Configuration"
    INTERNAL_ERROR = "internal_error", "Internal error"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Team(models.TextChoices):
    SALES_OPS = "sales_ops", "Sales operations"
    FINANCE_OPS = "finance_ops", "Finance operations"
    DATA_STEWARD = "data_steward", "Master data"
    INTEGRATION_SUPPORT = "integration_support", "Integration support"


# Who owns a category by default, and how long they have before it is overdue.
CATEGORY_OWNER: dict[str, str] = {
    Category.VALIDATION: Team.SALES_OPS,
    Category.MAPPING: Team.DATA_STEWARD,
    Category.MASTER_DATA: Team.DATA_STEWARD,
    Category.TAX: Team.FINANCE_OPS,
    Category.DOWNSTREAM_API: Team.INTEGRATION_SUPPORT,
    Category.DUPLICATE_EVENT: Team.INTEGRATION_SUPPORT,
    Category.CONFIGURATION: Team.INTEGRATION_SUPPORT,
    Category.INTERNAL_ERROR: Team.INTEGRATION_SUPPORT,
}
CATEGORY_SLA: dict[str, dt.timedelta] = {
    Category.VALIDATION: dt.timedelta(hours=8),
    Category.MAPPING: dt.timedelta(hours=24),
    Category.MASTER_DATA: dt.timedelta(hours=24),
    Category.TAX: dt.timedelta(hours=8),
    Category.DOWNSTREAM_API: dt.timedelta(hours=4),
    Category.DUPLICATE_EVENT: dt.timedelta(hours=24),
    Category.CONFIGURATION: dt.timedelta(hours=4),
    Category.INTERNAL_ERROR: dt.timedelta(hours=4),
}


@dataclass(frozen=True)
class Problem:
    """What went wrong, for whom, and how to group it with identical ones.

    ``correlation_id`` names the deal or record (an enterprise id); identical problems share
    ``(system, error_class, step)``. ``team`` defaults to the category's owner."""

    category: str
    message: str
    error_class: str
    system: str = ""
    step: str = ""
    severity: str = Severity.MEDIUM
    team: str = ""
    correlation_id: str = ""
    context: dict[str, Any] = field(default_factory=dict)


class ProblemSink(Protocol):
    def problem_raise(self, problem: Problem, *, actor: Actor, reason: str) -> Any:
        """Record ``problem`` for a person (inside the caller's transaction) and return it;
        ``reason`` is the history row's."""

    def problem_close(self, reference: str, *, actor: Actor, reason: str) -> bool:
        """Close the open problem ``reference`` (``str(...)``'s ``EXC-n`` of what
        ``problem_raise`` returned) because what it reported is gone (inside the caller's
        transaction). False when it is not this sink's or not open any more."""


_sinks: list[ProblemSink] = []


def problem_sink_register(sink: ProblemSink) -> None:
    """Called once at start-up by the app that keeps the queue (``exceptions``)."""
    if sink not in _sinks:
        _sinks.append(sink)


def problem_raise(problem: Problem, *, actor: Actor, reason: str = "") -> list[Any]:
    """Hand ``problem`` to every registered sink (inside the caller's transaction); the
    history rows say ``reason`` (the message when empty)."""
    if problem.category not in Category.values:
        raise ValueError(f"unknown problem category {problem.category!r}")
    if not _sinks:
        raise RuntimeError(f"no problem sink is registered; {problem.message!r} would be lost")
    why = reason or problem.message
    return [sink.problem_raise(problem, actor=actor, reason=why) for sink in _sinks]


def problem_close(reference: str, *, actor: Actor, reason: str) -> bool:
    """Tell every sink that the problem ``reference`` is gone (a reconciliation no longer
    finds its drift, or finance resolved it); True when a sink closed it."""
    closed = False
    for sink in _sinks:
        closer = getattr(sink, "problem_close", None)
        if closer is not None and closer(reference, actor=actor, reason=reason):
            closed = True
    return closed
