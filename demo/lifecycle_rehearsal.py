"""A rehearsal of the contract lifecycle: over active contracts (made through the sandbox
CPQ first when there are too few), CPQ processes upgrades, downgrades, future-dated changes,
quoted renewals, cancellations now and at term end, and stale changes (two amendments of
the same version); auto-renewals are recorded by the schedule. Every change goes through
the sandbox's real HTTP and Tandem's webhook endpoint, under a chaos profile that also
duplicates and reorders the webhooks. Then the books are checked: no record twice
downstream, no change lost, none applied out of order, and the versions in effect agree
with billing line by line.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from core.audit import Actor
from core.problems import Category
from demo.simulate import CHAOS_PROFILES, Sandbox, SimulationError, simulate
from exceptions.models import OPEN_STATES, OperationalException
from exceptions.services import exception_retry
from masterdata.models import ExternalId
from orchestration.workflows import lifecycle as changes
from orchestration.workflows.models import RunState
from q2c import lifecycle, services
from q2c.models import (
    Contract,
    ContractState,
    ContractVersion,
    CreditNote,
    UsageRecord,
    VersionState,
)

CHANGE_WEIGHTS = {
    "upgrade": 25,
    "downgrade": 20,
    "future": 10,
    "renew_quoted": 10,
    "renew_auto": 10,
    "cancel_now": 10,
    "cancel_term_end": 5,
    "stale": 10,
}


@dataclass
class Sent:
    contract: str
    kind: str
    change_key: str


@dataclass
class LifecycleSummary:
    scenario: str = "lifecycle"
    contracts: int = 0
    contracts_created: int = 0
    changes_sent: int = 0
    changes_by_kind: dict[str, int] = field(default_factory=dict)
    changes_applied: int = 0
    changes_pending: int = 0
    changes_parked: int = 0
    renewed: int = 0
    cancelled: int = 0
    credit_notes: int = 0
    usage_records: int = 0
    duplicates: int = 0
    duplicate_records: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    billing_mismatches: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    open_exceptions: dict[str, int] = field(default_factory=dict)
    exceptions_retried: int = 0
    elapsed_seconds: float = 0.0
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _linked(contract: Contract) -> bool:
    """A contract that reached the systems (its subscription and ERP customer are known)."""
    return (
        ExternalId.objects.filter(
            system="billing", object_type="subscription", enterprise_id=contract.enterprise_id
        ).exists()
        and ExternalId.objects.filter(
            system="erp", object_type="customer", enterprise_id=contract.account.enterprise_id
        ).exists()
    )


def _candidates(today: dt.date) -> list[Contract]:
    found = (
        Contract.objects.filter(
            state=ContractState.ACTIVE, start_date__lte=today, end_date__gt=today
        )
        .exclude(versions__state=VersionState.PENDING)
        .select_related("account")
        .order_by("pk")
    )
    return [contract for contract in found if _linked(contract)]


def _event_lines(
    version: ContractVersion, contract: Contract, on: dt.date, quantities: dict[str, int]
) -> list[dict[str, Any]]:
    return [
        {
            "product_code": line.product_code,
            "description": line.description,
            "kind": line.kind,
            "quantity": str(quantities.get(line.product_code, int(line.quantity))),
            "unit_price": f"{line.unit_price:.2f}",
            "discount_percent": f"{line.discount_percent.normalize():f}",
            "billing_period": line.billing_period,
            "term_start": on.isoformat(),
            "term_end": contract.end_date.isoformat(),
        }
        for line in version.lines.order_by("line_no")
    ]


def _amend(
    sandbox: Sandbox, contract: Contract, version: ContractVersion, on: dt.date,
    quantities: dict[str, int],
) -> str:  # fmt: skip
    body: dict[str, Any] = {
        "effective_date": on.isoformat(),
        "base_version": version.number,
        "lines": _event_lines(version, contract, on, quantities),
    }
    answer = sandbox.post("cpq", f"/contracts/{contract.enterprise_id}/amendments", body)
    return f"amendment:{answer['data']['cpq_quote_id']}"


def _send_change(
    sandbox: Sandbox, rng: random.Random, contract: Contract, kind: str, today: dt.date
) -> list[Sent]:
    """Send one change of ``kind`` for ``contract``; what was sent (two for a stale pair)."""
    version = services.contract_active_version(contract=contract)
    assert version is not None
    lines = list(version.lines.all())
    recurring = [line for line in lines if line.kind == "recurring"]
    one_period = len({line.billing_period for line in recurring}) == 1
    if kind in ("upgrade", "downgrade", "future", "stale") and not one_period:
        kind = "cancel_term_end"
    if kind == "downgrade" and not any(line.quantity >= 2 for line in recurring):
        kind = "upgrade"
    if kind == "future" and today + dt.timedelta(days=7) > contract.end_date:
        kind = "upgrade"
    cid = contract.enterprise_id
    if kind in ("upgrade", "future", "stale"):
        line = rng.choice(recurring)
        more = {line.product_code: int(line.quantity) + rng.choice([1, 2, 5])}
        on = today + dt.timedelta(days=7) if kind == "future" else today
        sent = [Sent(cid, kind, _amend(sandbox, contract, version, on, more))]
        if kind == "stale":  # a second change of the same version: one of the two is stale
            fewer = {line.product_code: int(line.quantity) + 1}
            sent.append(Sent(cid, kind, _amend(sandbox, contract, version, today, fewer)))
        return sent
    if kind == "downgrade":
        line = rng.choice([line for line in recurring if line.quantity >= 2])
        less = {line.product_code: max(1, int(line.quantity) // 2)}
        return [Sent(cid, kind, _amend(sandbox, contract, version, today, less))]
    if kind == "renew_quoted":
        start = contract.end_date + dt.timedelta(days=1)
        end = lifecycle.add_months(start, 12) - dt.timedelta(days=1)
        body = {
            "term_start": start.isoformat(), "term_end": end.isoformat(),
            "lines": [
                {**row, "unit_price": f"{(float(row['unit_price']) * 1.03):.2f}",
                 "term_start": start.isoformat(), "term_end": end.isoformat()}
                for row in _event_lines(version, contract, start, {})
            ],
        }  # fmt: skip
        answer = sandbox.post("cpq", f"/contracts/{cid}/renewals", body)
        return [Sent(cid, kind, f"renewal:{answer['data']['renewal_id']}")]
    if kind == "renew_auto":
        actor = Actor.system("worker")
        lifecycle.contract_renewal_terms_set(
            contract=contract, auto_renew=True, uplift_percent=Decimal("3"),
            actor=actor, reason="rehearsal: auto-renewal with 3% uplift",
        )  # fmt: skip
        recorded = lifecycle.contract_auto_renew(contract=contract, actor=actor)
        if recorded.created and not recorded.parked:
            changes.change_workflow_start(version=recorded.version, actor=actor)
        return [Sent(cid, kind, recorded.version.change_key)]
    mode = "now" if kind == "cancel_now" else "term_end"
    cancel: dict[str, Any] = {
        "effective_date": (today if mode == "now" else contract.end_date).isoformat(),
        "reason": f"rehearsal {kind}", "mode": mode, "base_version": version.number,
    }  # fmt: skip
    answer = sandbox.post("cpq", f"/contracts/{cid}/cancellations", cancel)
    return [Sent(cid, kind, f"cancellation:{answer['data']['cancellation_id']}")]


def _version_of(sent: Sent) -> ContractVersion | None:
    return (
        ContractVersion.objects.filter(
            contract__enterprise_id=sent.contract, change_key=sent.change_key
        )
        .select_related("contract", "order")
        .first()
    )


def _open_exception(version: ContractVersion) -> bool:
    refs = [version.contract.enterprise_id] + (
        [version.order.enterprise_id] if version.order else []
    )
    return OperationalException.objects.filter(
        correlation_id__in=refs, state__in=OPEN_STATES
    ).exists()


def _settled(sent: Sent, today: dt.date) -> bool:
    version = _version_of(sent)
    if version is None:
        return False
    if version.state != VersionState.PENDING:
        return True
    if _open_exception(version):
        return True
    run = changes.run_for_version(version)
    # a change dated later has told the ERP and waits for its date
    return (
        run is not None
        and run.state == RunState.WAITING
        and run.current_step == "await_effective_date"
        and version.effective_date > today
    )


def _wait(
    sent: list[Sent], today: dt.date, *, timeout: float, progress: Callable[[int, int], None]
) -> list[Sent]:
    deadline = time.monotonic() + timeout
    while True:
        connections.close_all()
        waiting = [s for s in sent if not _settled(s, today)]
        progress(len(sent) - len(waiting), len(sent))
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(1.0)


def _retry_exceptions(contracts: list[Contract]) -> int:
    ids = [c.enterprise_id for c in contracts] + [
        ref
        for ref in ContractVersion.objects.filter(
            contract__in=contracts, order__isnull=False
        ).values_list("order__enterprise_id", flat=True)
    ]
    retried = 0
    for exc in OperationalException.objects.filter(
        correlation_id__in=ids, state="open", category=Category.DOWNSTREAM_API
    ):
        exception_retry(exception=exc, actor=Actor.system("worker"), reason="rehearsal: retrying")
        retried += 1
    return retried


def _books(
    summary: LifecycleSummary, sandbox: Sandbox, contracts: list[Contract], sent: list[Sent]
) -> None:
    erp = sandbox.control("GET", "/state/erp")["records"]
    billing = sandbox.control("GET", "/state/billing")["records"]
    sales = Counter(row.get("externalId") for row in erp.get("salesorders", []))
    returns = Counter(row.get("externalId") for row in erp.get("returnauthorizations", []))
    subscriptions: dict[str, list[dict[str, Any]]] = {}
    per_reference: Counter[str] = Counter()
    for row in billing.get("subscriptions", []):
        metadata = row.get("metadata") or {}
        if metadata.get("tandem_contract"):
            subscriptions.setdefault(metadata["tandem_contract"], []).append(row)
            per_reference[metadata.get("tandem_order") or row["id"]] += 1
    ids = {c.enterprise_id for c in contracts}
    versions = list(
        ContractVersion.objects.filter(contract__enterprise_id__in=ids)
        .select_related("contract", "order", "base_version")
        .prefetch_related("lines")
        .order_by("contract_id", "number")
    )
    refs = [f"{v.contract.enterprise_id}:v{v.number}" for v in versions] + [
        v.order.enterprise_id for v in versions if v.order is not None
    ]
    for ref in refs:
        for name, counter in (("ERP sales order", sales), ("ERP return", returns)):
            if counter[ref] > 1:
                summary.duplicate_records.append(f"{name} {ref} x{counter[ref]}")
        if returns[f"{ref}:return"] > 1:
            summary.duplicate_records.append(f"ERP return {ref}:return x{returns[f'{ref}:return']}")
    for cid in ids:
        for row in subscriptions.get(cid, []):
            reference = (row.get("metadata") or {}).get("tandem_order") or row["id"]
            if per_reference[reference] > 1:
                summary.duplicate_records.append(
                    f"billing subscription {reference} x{per_reference[reference]}"
                )
    summary.duplicates = len(summary.duplicate_records)
    by_contract: dict[int, list[ContractVersion]] = {}
    for version in versions:
        by_contract.setdefault(version.contract_id, []).append(version)
    for chain in by_contract.values():
        applied = [v for v in chain if v.state in (VersionState.ACTIVE, VersionState.SUPERSEDED)]
        for before, after in itertools.pairwise(applied):
            if after.base_version_id != before.pk or after.effective_date < before.effective_date:
                summary.out_of_order.append(f"{after} applied after {before}")
    keys = {(v.contract.enterprise_id, v.change_key): v for v in versions}
    summary.lost = [
        f"{s.contract} {s.change_key}" for s in sent if (s.contract, s.change_key) not in keys
    ]
    sent_versions = [
        keys[(s.contract, s.change_key)] for s in sent if (s.contract, s.change_key) in keys
    ]
    summary.changes_applied = sum(
        1 for v in sent_versions if v.state in (VersionState.ACTIVE, VersionState.SUPERSEDED)
    )
    summary.changes_pending = sum(1 for v in sent_versions if v.state == VersionState.PENDING)
    summary.changes_parked = sum(1 for v in sent_versions if v.state == VersionState.PARKED)
    for contract in Contract.objects.filter(enterprise_id__in=ids):
        rows = subscriptions.get(contract.enterprise_id, [])
        if not rows:
            continue
        if contract.state == ContractState.CANCELLED:
            live = [row["id"] for row in rows if row["status"] != "canceled"]
            if live:
                summary.billing_mismatches.append(
                    f"{contract.enterprise_id} cancelled, billing still has {live}"
                )
            continue
        active = services.contract_active_version(contract=contract)
        if active is None:
            continue
        want = sorted(int(line.quantity) for line in active.lines.all() if line.kind == "recurring")
        has = sorted(int(item["quantity"]) for row in rows for item in row["items"]["data"])
        if want != has:
            summary.billing_mismatches.append(
                f"{contract.enterprise_id} v{active.number} {want} != billing {has}"
            )
    summary.renewed = sum(
        1 for v in sent_versions if v.kind == "renewal" and v.state != VersionState.PARKED
    )
    summary.cancelled = Contract.objects.filter(
        enterprise_id__in=ids, state=ContractState.CANCELLED
    ).count()
    summary.credit_notes = CreditNote.objects.filter(contract__enterprise_id__in=ids).count()
    summary.usage_records = UsageRecord.objects.filter(contract__enterprise_id__in=ids).count()
    order_refs = [v.order.enterprise_id for v in versions if v.order is not None]
    summary.open_exceptions = dict(
        Counter(
            OperationalException.objects.filter(
                correlation_id__in=[*ids, *order_refs], state__in=OPEN_STATES
            ).values_list("category", flat=True)
        )
    )


def simulate_lifecycle(
    *,
    contracts: int,
    chaos: str = "none",
    seed: int = 1,
    sandbox_url: str | None = None,
    timeout: float = 900.0,
    retry_exceptions: bool = True,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> LifecycleSummary:
    """Change ``contracts`` active contracts through the sandbox under ``chaos`` and check
    the books (see the module). Raises ``SimulationError`` for an unknown chaos profile."""
    if chaos not in CHAOS_PROFILES:
        raise SimulationError(f"unknown chaos profile {chaos!r}: {', '.join(CHAOS_PROFILES)}")
    started = time.monotonic()
    today = timezone.localdate()
    summary = LifecycleSummary()
    url = (sandbox_url or settings.CONNECTOR_SANDBOX_URL).rstrip("/")
    have = _candidates(today)
    # Some new quotes stop on an exception for a person (a near-duplicate customer for a
    # steward): make more until there are enough live contracts, three rounds at most.
    for round_ in range(3):
        if len(have) >= contracts:
            break
        made = simulate(quotes=contracts - len(have), seed=seed + round_, sandbox_url=url,
                        timeout=timeout, progress=progress)  # fmt: skip
        summary.contracts_created += made.quotes_approved
        connections.close_all()
        have = _candidates(today)
    rng = random.Random(seed)
    chosen = rng.sample(have, min(contracts, len(have)))
    summary.contracts = len(chosen)
    sandbox = Sandbox(url=url)
    kinds = list(CHANGE_WEIGHTS)
    weights = [CHANGE_WEIGHTS[k] for k in kinds]
    sent: list[Sent] = []
    for system, faults in CHAOS_PROFILES[chaos].items():
        sandbox.control("POST", f"/faults/{system}", faults)
    try:
        for contract in chosen:
            sent += _send_change(sandbox, rng, contract, rng.choices(kinds, weights)[0], today)
        summary.changes_sent = len(sent)
        summary.changes_by_kind = dict(Counter(s.kind for s in sent))
        waiting = _wait(sent, today, timeout=timeout, progress=progress)
        if chaos != "none" and retry_exceptions:
            for system in CHAOS_PROFILES[chaos]:
                sandbox.control("DELETE", f"/faults/{system}")
            summary.exceptions_retried = _retry_exceptions(chosen)
            if summary.exceptions_retried or waiting:
                waiting = _wait(sent, today, timeout=timeout, progress=progress)
    finally:
        for system in CHAOS_PROFILES[chaos]:
            sandbox.control("DELETE", f"/faults/{system}")
    summary.unsettled = [f"{s.contract} {s.change_key}" for s in waiting]
    _books(summary, sandbox, chosen, sent)
    summary.ok = not (
        summary.duplicates or summary.lost or summary.out_of_order or summary.billing_mismatches
        or summary.unsettled
    )  # fmt: skip
    summary.elapsed_seconds = round(time.monotonic() - started, 1)
    return summary
