"""Running a reconciliation and keeping its drift items; finance resolving them."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from core.audit import Actor, audit_context
from core.errors import Refused
from core.problems import Category, Problem, Severity, Team, problem_close, problem_raise
from core.transitions import transition_apply
from orchestration.connectors.errors import ConnectorError
from orchestration.connectors.registry import connector_for
from orchestration.reconciliation import sources
from orchestration.reconciliation.compare import (
    Finding,
    Outcome,
    RemoteRow,
    Spec,
    pair_compare,
    reconcile,
    row_from_record,
    row_record,
)
from orchestration.reconciliation.models import (
    DriftItem,
    DriftResolution,
    DriftState,
    ReconciledSystem,
    ReconciliationRun,
    RunState,
)

logger = logging.getLogger(__name__)

# Runs that found a drift item this many times in a row raise an exception for it: once may
# be a record in flight (an invoice posted between the two reads).
PERSISTS_AFTER_RUNS = 2


@dataclass(frozen=True)
class Stream:
    """One kind of record compared with one system: the spec, Tandem's side, the listing."""

    spec: Spec
    tandem: sources.TandemSource
    pages: Callable[[dt.datetime | None], Iterable[list[RemoteRow]]]


def streams_for(system: str) -> list[Stream]:
    """What is compared with ``system``, reading it through its configured connector.
    Raises ``Refused`` when that connector cannot list its records."""
    connector = connector_for(system)
    if system == ReconciledSystem.BILLING:
        needed = ("invoices_list", "subscriptions_list")
    elif system == ReconciledSystem.ERP:
        needed = ("sales_orders_list", "invoices_list")
    else:
        raise Refused(f"{system!r} is not a system Tandem reconciles", kind=Refused.Kind.INVALID)
    if not all(hasattr(connector, name) for name in needed):
        raise Refused(
            f"the {system} connector ({type(connector).__name__}) cannot list its records",
            kind=Refused.Kind.INVALID,
        )
    invoices = Stream(
        sources.INVOICE_SPECS[system],
        sources.invoice_source(system),
        lambda since: sources.remote_pages(connector.invoices_list, sources.remote_invoice, since),
    )
    if system == ReconciledSystem.BILLING:
        return [
            invoices,
            Stream(
                sources.SUBSCRIPTION_SPEC,
                sources.subscription_source(),
                lambda since: sources.remote_pages(
                    connector.subscriptions_list, sources.remote_subscription, since
                ),
            ),
        ]
    return [
        Stream(
            sources.SALES_ORDER_SPEC,
            sources.sales_order_source(),
            lambda since: sources.remote_pages(
                connector.sales_orders_list, sources.remote_sales_order, since
            ),
        ),
        invoices,
    ]


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cycle collector off while a comparison holds a million rows: it would walk them
    all again and again as they are allocated (the rows make no cycles; reference counting
    frees them), which made a million-row run several times slower than a tenth of it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def stream_compare(stream: Stream, *, since: dt.datetime | None) -> Outcome:
    """Compare one stream: everything (``since`` None) or what changed since ``since``.

    On an incremental run a Tandem record that changed while the system's did not is
    compared with the system's record as the open drift item on it last saw it (unchanged
    since, or the listing would have shown it): that is how a drift fixed in Tandem closes
    without reading the system in full. A change in Tandem that makes new drift against a
    system record that did not change is found by the next full run."""
    with _no_cyclic_gc():
        outcome = reconcile(
            stream.spec,
            tandem_rows=stream.tandem.rows(since),
            remote_pages=stream.pages(since),
            tandem_by_keys=stream.tandem.by_keys if since is not None else None,
            tandem_by_references=stream.tandem.by_references,
            report_unmatched_tandem=since is None,
        )
    if outcome.leftover:
        by_ref = {row.ref: row for row in outcome.leftover}
        refs = list(by_ref)
        for start in range(0, len(refs), 500):
            items = DriftItem.objects.filter(
                state=DriftState.OPEN, system=stream.spec.system,
                object_type=stream.spec.object_type, tandem_ref__in=refs[start : start + 500],
            ).values_list("tandem_ref", "remote_record")  # fmt: skip
            for tandem_ref, remote_record in items:
                remote = row_from_record(remote_record)
                tandem = by_ref[tandem_ref]
                if remote is None or remote.key != tandem.key:
                    continue
                outcome.tandem_refs.add(tandem_ref)
                outcome.findings.extend(pair_compare(stream.spec, tandem, remote))
    return outcome


def since_last_run(system: str) -> dt.datetime | None:
    """Where an incremental run of ``system`` starts: the start of the last run that
    succeeded (what changed while it read is read again), None when there was none."""
    last = (
        ReconciliationRun.objects.filter(system=system, state=RunState.SUCCEEDED)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return last


def reconciliation_run(
    *,
    system: str,
    actor: Actor,
    since: dt.datetime | None = None,
    streams: list[Stream] | None = None,
) -> ReconciliationRun:
    """Compare Tandem with ``system`` (in full, or what changed since ``since``) and keep
    the drift items: new ones open, ones found again are updated (and raise an exception
    for finance once they persist), open ones this run examined and no longer found close
    by themselves. Reads with no transaction open; writes the outcome in one.

    Raises ``PermissionDenied`` without ``orchestration.run_reconciliation``; refuses an
    unknown system or one whose connector cannot list (``Refused``). A system that cannot
    be read now leaves the run ``failed`` with the reason (returned, not raised)."""
    if not actor.has_perm("orchestration.run_reconciliation"):
        raise PermissionDenied(f"{actor.name} may not run a reconciliation")
    if system not in ReconciledSystem.values:
        raise Refused(f"{system!r} is not a system Tandem reconciles", kind=Refused.Kind.INVALID)
    if since is not None and timezone.is_naive(since):
        raise Refused("since needs a time zone", kind=Refused.Kind.INVALID)
    streams = streams if streams is not None else streams_for(system)
    with audit_context(actor=actor, reason="reconciliation started"):
        run = ReconciliationRun.objects.create(system=system, since=since, triggered_by=actor.name)
    outcomes: list[tuple[Spec, Outcome]] = []
    try:
        for stream in streams:
            outcomes.append((stream.spec, stream_compare(stream, since=since)))
    except ConnectorError as exc:
        with audit_context(actor=actor, reason="reconciliation failed"):
            run.state = RunState.FAILED
            run.error = f"{system} could not be read: {exc}"[:2000]
            run.finished_at = timezone.now()
            run.save()
        logger.warning("reconciliation %s of %s failed: %s", run.pk, system, type(exc).__name__)
        return run
    with transaction.atomic():
        drift_apply(run=run, outcomes=outcomes, actor=actor)
    return run


def _amounts(finding: Finding) -> tuple[str, Decimal | None, Decimal | None, Decimal]:
    tandem, remote = finding.tandem, finding.remote
    currency = (tandem.currency if tandem else "") or (remote.currency if remote else "")
    mine = tandem.amount if tandem and tandem.amount >= 0 else None
    theirs = remote.amount if remote else None
    if finding.drift_type == "tax" and tandem and remote:
        mine, theirs = tandem.tax, remote.tax
    if mine is not None and theirs is not None:
        difference = abs(theirs - mine)
    else:
        difference = mine if mine is not None else theirs or Decimal(0)
    return currency, mine, theirs, difference


def _item_values(run: ReconciliationRun, finding: Finding) -> dict[str, Any]:
    currency, mine, theirs, difference = _amounts(finding)
    tandem = finding.tandem
    return {
        "system": run.system,
        "object_type": finding.object_type,
        "drift_type": finding.drift_type,
        "tandem_ref": finding.tandem_ref,
        "remote_ref": finding.remote_ref or (tandem.key if tandem else ""),
        "legal_entity": tandem.legal_entity if tandem else "",
        "currency": currency,
        "tandem_amount": mine,
        "remote_amount": theirs,
        "difference": difference,
        "tandem_record": row_record(tandem),
        "remote_record": row_record(finding.remote),
        "detail": finding.detail[:255],
    }


def drift_apply(
    *, run: ReconciliationRun, outcomes: list[tuple[Spec, Outcome]], actor: Actor
) -> None:
    """Write what ``run`` found (inside the caller's transaction)."""
    now = timezone.now()
    found: dict[str, Finding] = {}
    for _, outcome in outcomes:
        for finding in outcome.findings:
            found.setdefault(f"{run.system}:{finding.key}", finding)
    existing: dict[str, DriftItem] = {}
    keys = list(found)
    for start in range(0, len(keys), 500):
        for item in DriftItem.objects.select_for_update().filter(
            state=DriftState.OPEN, key__in=keys[start : start + 500]
        ):
            existing[item.key] = item
    new, seen_again = [], []
    for key, finding in found.items():
        item = existing.get(key)
        if item is None:
            new.append(
                DriftItem(
                    key=key,
                    first_run=run,
                    last_run=run,
                    first_seen_at=now,
                    last_seen_at=now,
                    **_item_values(run, finding),
                )
            )
            continue
        for name, value in _item_values(run, finding).items():
            setattr(item, name, value)
        item.last_run, item.last_seen_at = run, now
        item.seen_count += 1
        seen_again.append(item)
    opened = len(new)
    if new:
        bulk_create_with_history(
            new, DriftItem, batch_size=1000, default_user=actor.user,
            default_change_reason=f"found by reconciliation REC-{run.pk}",
        )  # fmt: skip
    for item in seen_again:
        if item.seen_count >= PERSISTS_AFTER_RUNS and not item.exception_ref:
            item.exception_ref = _exception_raise(item, actor=actor)
    if seen_again:
        bulk_update_with_history(
            seen_again, DriftItem,
            ["last_run", "last_seen_at", "seen_count", "exception_ref", "tandem_amount",
             "remote_amount", "difference", "tandem_record", "remote_record", "detail",
             "currency", "legal_entity"],
            default_user=actor.user, default_change_reason=f"still found by REC-{run.pk}",
        )  # fmt: skip
    closed = _drift_clear(run=run, outcomes=outcomes, found=set(found), actor=actor, now=now)
    with audit_context(actor=actor, reason="reconciliation finished"):
        run.tandem_rows = sum(outcome.tandem_rows for _, outcome in outcomes)
        run.remote_rows = sum(outcome.remote_rows for _, outcome in outcomes)
        run.found, run.opened, run.closed = len(found), opened, closed
        run.state, run.finished_at = RunState.SUCCEEDED, timezone.now()
        run.save()


def _exception_raise(item: DriftItem, *, actor: Actor) -> str:
    problem = Problem(
        category=Category.DOWNSTREAM_API,
        message=f"Reconciliation: {item.get_drift_type_display()} — {item.detail}",
        error_class=f"drift.{item.drift_type}",
        system=item.system,
        step="reconcile",
        severity=Severity.HIGH if item.difference else Severity.MEDIUM,
        team=Team.FINANCE_OPS,
        correlation_id=item.tandem_ref,
        context={"drift_item": item.pk, "key": item.key, "remote_ref": item.remote_ref},
    )
    raised = problem_raise(problem, actor=actor, reason=f"drift DRIFT-{item.pk} persists")
    first = raised[0] if raised else None
    return f"EXC-{first.pk}" if first is not None and getattr(first, "pk", None) else ""


def _drift_clear(
    *,
    run: ReconciliationRun,
    outcomes: list[tuple[Spec, Outcome]],
    found: set[str],
    actor: Actor,
    now: dt.datetime,
) -> int:
    """Close the open drift this run examined and did not find again: on a full run every
    open item of the kinds it compared; on an incremental one those naming a record it read."""
    closed = 0
    for spec, outcome in outcomes:
        candidates = DriftItem.objects.filter(
            state=DriftState.OPEN, system=run.system, object_type=spec.object_type
        ).exclude(last_run=run)
        for item in candidates.iterator(chunk_size=500):
            if item.key in found:
                continue
            examined = run.since is None or (
                item.tandem_ref in outcome.tandem_refs or item.remote_ref in outcome.remote_keys
            )
            if not examined:
                continue
            why = f"no longer found by REC-{run.pk}"
            transition_apply(item, "clear", actor=actor, reason=why, at=now)
            if item.exception_ref:
                problem_close(item.exception_ref, actor=actor, reason=f"DRIFT-{item.pk} {why}")
            closed += 1
    return closed


# --- finance ------------------------------------------------------------------------------


def drift_resolve(*, item: DriftItem, code: str, actor: Actor, reason: str) -> DriftItem:
    """Close an open drift item as resolved, with one of ``DriftResolution`` and the
    operator's reason (kept as its note), and the exception it raised with it; one
    transaction.

    Refuses an unknown code (``INVALID``), a blank reason, an item that is not open and a
    lost race; raises ``PermissionDenied`` without ``orchestration.resolve_drift``."""
    if not actor.has_perm("orchestration.resolve_drift"):
        raise PermissionDenied(f"{actor.name} may not resolve drift")
    if code not in DriftResolution.values:
        raise Refused(
            f"choose a resolution code to resolve DRIFT-{item.pk}", kind=Refused.Kind.INVALID
        )
    with transaction.atomic():
        transition_apply(
            item, "resolve", actor=actor, reason=reason, code=code, note=reason, at=timezone.now()
        )
        if item.exception_ref:
            problem_close(item.exception_ref, actor=actor, reason=f"DRIFT-{item.pk}: {reason}")
    return item


@dataclass(frozen=True)
class BulkLine:
    item_id: int
    ok: bool
    message: str


def drift_resolve_bulk(
    *, item_ids: list[int], code: str, actor: Actor, reason: str
) -> list[BulkLine]:
    """Resolve each item in its own transaction; one refused item does not stop the others.
    Returns one line per item for the report."""
    if not actor.has_perm("orchestration.resolve_drift"):
        raise PermissionDenied(f"{actor.name} may not resolve drift")
    if code not in DriftResolution.values:
        raise Refused("choose a resolution code", kind=Refused.Kind.INVALID)
    if not reason or not reason.strip():
        raise Refused("a reason is required to resolve drift", kind=Refused.Kind.REASON_REQUIRED)
    report: list[BulkLine] = []
    items = {item.pk: item for item in DriftItem.objects.filter(pk__in=item_ids)}
    for item_id in item_ids:
        item = items.get(item_id)
        if item is None:
            report.append(BulkLine(item_id, False, f"DRIFT-{item_id} does not exist"))
            continue
        try:
            drift_resolve(item=item, code=code, actor=actor, reason=reason)
        except Refused as exc:
            report.append(BulkLine(item_id, False, str(exc)))
        else:
            report.append(BulkLine(item_id, True, f"DRIFT-{item_id} resolved"))
    return report
