"""Reads of the exception queue for the console: filtered lists, groups, one exception's story."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max, Min, QuerySet

from exceptions.models import OPEN_STATES, OperationalException
from orchestration.models import OutboundCall
from orchestration.workflows.models import StepRun

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


def _filtered(filters: ExceptionFilters) -> QuerySet[OperationalException]:
    qs = OperationalException.objects.all()
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
    return _filtered(filters).select_related("order").order_by("-created_at", "-pk")


def exception_groups(*, filters: ExceptionFilters) -> QuerySet[OperationalException, Any]:
    """Identical errors (one fingerprint) as one row each: how many, since when, due when.

    Rows are dicts; the most frequent group comes first.
    """
    return (
        _filtered(filters)
        .values("fingerprint", "category", "owner_team", "system", "step", "error_class")
        .annotate(
            count=Count("pk"),
            first_seen=Min("created_at"),
            last_seen=Max("created_at"),
            earliest_due=Min("sla_due_at"),
            example=Max("message"),
        )
        .order_by("-count", "-last_seen", "fingerprint")
    )


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
