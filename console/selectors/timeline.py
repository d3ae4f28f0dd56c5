"""Reads for the deal timeline: one chronological story of an order or a contract.

It merges the record's history (state transitions and operator actions), the inbound events
and outbound calls correlated by the deal's enterprise ids, the workflow steps, and the
exceptions with their history. Each source is one query capped at ``SOURCE_LIMIT`` rows (the
newest), so the page costs the same number of queries whatever the deal's size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from core.audit import SYSTEM_ACTOR_PATTERN
from exceptions.models import OperationalException
from masterdata.models import ExternalId
from orchestration.models import InboundEvent, OutboundCall
from orchestration.workflows.models import StepRun
from q2c.models import Contract, ContractVersion, Order

SOURCE_LIMIT = 200

# Sort order of entries with the same timestamp: cause before effect.
_KIND_ORDER = {"inbound": 0, "transition": 1, "step": 2, "call": 3, "exception": 4}


@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    kind: str  # inbound, transition, step, call, exception
    title: str
    detail: str = ""
    actor: str = ""
    operator: bool = False  # done by a person, not by the platform
    state: str = ""
    row: Any = None
    # Ties at one instant: the record's own rows (0) before its parts' (a contract's versions:
    # 1), then by primary key, which only orders rows of one table.
    sort_source: int = 0
    sort_pk: int = 0


@dataclass
class Timeline:
    entries: list[Entry]
    steps: list[StepRun]
    crosswalk: list[ExternalId]
    contracts: list[Contract] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)


def _actor(user: Any) -> tuple[str, bool]:
    if user is None:
        return "unknown", False
    name = str(user.get_username())
    return name, not (SYSTEM_ACTOR_PATTERN.match(name) and not user.is_active)


def _newest(qs: Any, order: tuple[str, ...], what: str, truncated: list[str]) -> list[Any]:
    rows = list(qs.order_by(*order)[: SOURCE_LIMIT + 1])
    if len(rows) > SOURCE_LIMIT:
        truncated.append(what)
        rows = rows[:SOURCE_LIMIT]
    return rows


def _history_entries(rows: list[Any], label: str, states: dict[str, str]) -> list[Entry]:
    """One entry per history row, oldest first; a row whose state differs from the previous
    one is a transition, others are changes (e.g. a field corrected)."""
    entries = []
    previous = None
    for row in sorted(rows, key=lambda r: (r.history_date, r.history_id)):
        actor, operator = _actor(row.history_user)
        if row.history_type == "+":
            title = f"{label} created ({states.get(row.state, row.state)})"
        elif row.state != previous:
            title = f"{label} → {states.get(row.state, row.state)}"
        else:
            title = f"{label} changed"
        entries.append(
            Entry(
                at=row.history_date,
                kind="transition",
                title=title,
                detail=row.history_change_reason or "",
                actor=actor,
                operator=operator,
                state=row.state,
                row=row,
                sort_pk=row.history_id,
            )
        )
        previous = row.state
    return entries


def _exception_entries(rows: list[Any]) -> list[Entry]:
    entries = []
    for row in sorted(rows, key=lambda r: (r.history_date, r.history_id)):
        actor, operator = _actor(row.history_user)
        if row.history_type == "+":
            title = f"EXC-{row.id} raised: {row.category} on {row.system or 'Tandem'} / {row.step}"
            detail = row.message
        else:
            title = f"EXC-{row.id} → {row.state}"
            detail = row.history_change_reason or ""
        entries.append(
            Entry(
                at=row.history_date,
                kind="exception",
                title=title,
                detail=detail,
                actor=actor,
                operator=operator,
                state=row.state,
                row=row,
                sort_pk=row.history_id,
            )
        )
    return entries


def _step_entries(steps: list[StepRun]) -> list[Entry]:
    entries = []
    for step in steps:
        at = step.finished_at or step.started_at or step.enqueued_at
        if at is None:
            continue
        detail = step.last_error or (f"external id {step.external_id}" if step.external_id else "")
        if step.skipped_effect:
            detail = f"{detail} (effect already existed, not repeated)".strip()
        entries.append(
            Entry(
                at=at,
                kind="step",
                title=f"step {step.name} {step.state} (attempt {step.attempts})",
                detail=detail,
                actor=step.system,
                state=step.state,
                row=step,
                sort_pk=step.pk,
            )
        )
    return entries


def _call_entries(calls: list[OutboundCall]) -> list[Entry]:
    return [
        Entry(
            at=call.created_at,
            kind="call",
            title=f"{call.system} {call.operation}: {call.method} {call.path}",
            detail=call.error_message,
            actor=call.system,
            state=call.outcome,
            row=call,
            sort_pk=call.pk,
        )
        for call in calls
    ]


def _inbound_entries(events: list[InboundEvent]) -> list[Entry]:
    return [
        Entry(
            at=event.received_at,
            kind="inbound",
            title=f"{event.system} sent {event.event_type or '?'}",
            detail=event.rejection_reason,
            actor=event.system,
            state=event.status,
            row=event,
            sort_pk=event.pk,
        )
        for event in events
    ]


def _merged(*groups: list[Entry]) -> list[Entry]:
    entries = [entry for group in groups for entry in group]
    return sorted(entries, key=lambda e: (e.at, _KIND_ORDER[e.kind], e.sort_source, e.sort_pk))


def _deal_sources(
    *, enterprise_ids: list[str], order_id: int | None, truncated: list[str]
) -> tuple[list[Entry], list[StepRun]]:
    """Inbound events, outbound calls, steps and exceptions of the deal (4 queries)."""
    events = _newest(
        InboundEvent.objects.filter(correlation_id__in=enterprise_ids).defer("raw_body", "headers"),
        ("-received_at", "-pk"),
        "inbound events",
        truncated,
    )
    calls = _newest(
        OutboundCall.objects.filter(correlation_id__in=enterprise_ids).defer(
            "request_body", "response_body"
        ),
        ("-created_at", "-pk"),
        "outbound calls",
        truncated,
    )
    steps: list[StepRun] = []
    exception_rows: list[Any] = []
    if order_id is not None:
        steps = list(
            StepRun.objects.filter(run__order_id=order_id)
            .select_related("run")
            .order_by("run__created_at", "run_id", "position")[:SOURCE_LIMIT]
        )
        exception_rows = _newest(
            OperationalException.history.filter(order_id=order_id).select_related("history_user"),
            ("-history_date", "-history_id"),
            "exception history",
            truncated,
        )
    entries = [
        *_inbound_entries(events),
        *_call_entries(calls),
        *_step_entries(steps),
        *_exception_entries(exception_rows),
    ]
    return entries, steps


def order_timeline(*, order: Order) -> Timeline:
    """The order's story, oldest first, with its steps and the crosswalk of its ids."""
    truncated: list[str] = []
    history = _newest(
        order.history.select_related("history_user"),
        ("-history_date", "-history_id"),
        "order history",
        truncated,
    )
    states = dict(Order._meta.get_field("state").choices or [])
    deal, steps = _deal_sources(
        enterprise_ids=[order.enterprise_id], order_id=order.pk, truncated=truncated
    )
    contracts = list(Contract.objects.filter(order=order).order_by("pk"))
    account_eid = order.account.enterprise_id if order.account is not None else ""
    crosswalk = list(
        ExternalId.objects.filter(
            enterprise_id__in=[
                order.enterprise_id,
                account_eid,
                *(c.enterprise_id for c in contracts),
            ]
        ).order_by("enterprise_id", "system", "object_type")
    )
    return Timeline(
        entries=_merged(_history_entries(history, "order", states), deal),
        steps=steps,
        crosswalk=crosswalk,
        contracts=contracts,
        truncated=truncated,
    )


def contract_timeline(*, contract: Contract) -> Timeline:
    """The contract's story: its history and its versions', plus the deal of its order."""
    truncated: list[str] = []
    history = _newest(
        contract.history.select_related("history_user"),
        ("-history_date", "-history_id"),
        "contract history",
        truncated,
    )
    version_rows = _newest(
        ContractVersion.history.filter(contract_id=contract.pk).select_related("history_user"),
        ("-history_date", "-history_id"),
        "version history",
        truncated,
    )
    states = dict(Contract._meta.get_field("state").choices or [])
    version_entries = []
    for row in sorted(version_rows, key=lambda r: (r.history_date, r.history_id)):
        actor, operator = _actor(row.history_user)
        version_entries.append(
            Entry(
                at=row.history_date,
                kind="transition",
                title=f"version {row.number} ({row.kind}) {row.state}",
                detail=row.history_change_reason or "",
                actor=actor,
                operator=operator,
                state=row.state,
                row=row,
                sort_source=1,
                sort_pk=row.history_id,
            )
        )
    order_eid = contract.order.enterprise_id if contract.order is not None else ""
    # Every version's workflow: amendments run on their orders, renewals and cancellations
    # on the contract itself.
    amendments = dict(Order.objects.filter(amends=contract).values_list("pk", "enterprise_id"))
    enterprise_ids = [
        contract.enterprise_id,
        *([order_eid] if order_eid else []),
        *amendments.values(),
    ]
    deal, steps = _deal_sources(
        enterprise_ids=enterprise_ids, order_id=contract.order_id, truncated=truncated
    )
    version_steps = list(
        StepRun.objects.filter(
            Q(run__order_id__in=list(amendments)) | Q(run__subject_id=contract.enterprise_id)
        )
        .select_related("run")
        .order_by("run__created_at", "run_id", "position")[:SOURCE_LIMIT]
    )
    deal = [*deal, *_step_entries(version_steps)]
    steps = [*steps, *version_steps]
    crosswalk = list(
        ExternalId.objects.filter(
            enterprise_id__in=[*enterprise_ids, contract.account.enterprise_id]
        ).order_by("enterprise_id", "system", "object_type")
    )
    return Timeline(
        entries=_merged(_history_entries(history, "contract", states), version_entries, deal),
        steps=steps,
        crosswalk=crosswalk,
        truncated=truncated,
    )
