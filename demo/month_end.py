"""The month-end rehearsal: quote to cash for N quotes, then drift made behind Tandem's back
in the sandbox's billing and ERP, then reconciliation, which must find exactly that drift.

The drift is made as someone working in those systems would make it, so no event reaches
Tandem: an invoice voided and a subscription cancelled through billing's own API (the sandbox
announces neither), a sales order line edited in the ERP's screen and an invoice posted twice
in billing (both through the sandbox's control API). Each is named as reconciliation names
what it finds: the drift type, the system, and the Tandem record it concerns.

A reconciliation runs before the drift is made: what it finds (``baseline``: drift that was
already there) is reported and left out of ``found``, so the rehearsal can be run again on
the same books; on fresh books the baseline is empty.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.audit import Actor
from demo.simulate import Sandbox, SimulationError, Summary, simulate
from masterdata.models import ExternalId
from orchestration.reconciliation.models import ReconciledSystem, RunState
from orchestration.reconciliation.selectors import runs_report
from orchestration.reconciliation.services import reconciliation_run
from q2c.models import Order, OrderState
from sandbox.config import default_api_key

DRIFT_KINDS = ("invoice_voided", "subscription_cancelled", "invoice_duplicated", "erp_line_edited")


@dataclass
class MonthEnd:
    quotes: Summary
    injected: list[dict[str, str]] = field(default_factory=list)
    baseline: list[dict[str, str]] = field(default_factory=list)
    found: list[dict[str, str]] = field(default_factory=list)
    missed: list[dict[str, str]] = field(default_factory=list)
    unexpected: list[dict[str, str]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The rehearsal as a plain dict (for the JSON the command prints)."""
        return {
            "quotes": {
                "approved": self.quotes.quotes_approved,
                "orders_by_state": self.quotes.orders_by_state,
                "ok": self.quotes.ok,
            },
            "injected": self.injected,
            "baseline": self.baseline,
            "found": self.found,
            "missed": self.missed,
            "unexpected": self.unexpected,
            "runs": self.runs,
            "ok": self.ok,
        }


def _drift(kind: str, system: str, record: str) -> dict[str, str]:
    return {"type": kind, "system": system, "record": record}


def _key(item: dict[str, str]) -> tuple[str, str, str]:
    return (item["type"], item["system"], item["record"])


def _tandem_ref(system: str, object_type: str, external_id: str) -> str:
    link = ExternalId.objects.filter(
        system=system, object_type=object_type, external_id=external_id
    ).first()
    if link is None:
        raise SimulationError(f"{system} {object_type} {external_id} is not linked in Tandem")
    return link.enterprise_id


def _reconcile() -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """A full reconciliation of billing and the ERP: what it found, and its runs."""
    actor = Actor.system("scheduler")
    runs = [
        reconciliation_run(system=system, actor=actor, since=None)
        for system in (ReconciledSystem.BILLING, ReconciledSystem.ERP)
    ]
    report = runs_report(runs)
    failed = [run for run in runs if run.state == RunState.FAILED]
    if failed:
        raise SimulationError(f"reconciliation of {failed[0].system} failed: {failed[0].error}")
    return list(report["found"]), list(report["runs"])


def _records(sandbox: Sandbox, system: str, collection: str) -> list[dict[str, Any]]:
    return list(sandbox.control("GET", f"/state/{system}")["records"].get(collection, []))


def _drift_inject(
    sandbox: Sandbox, rng: random.Random, orders: list[Order]
) -> list[dict[str, str]]:
    """Make one drift of each kind, each on a different order of ``orders`` (picked by
    ``rng``), behind Tandem's back; what was made, named as reconciliation names it."""
    refs = [order.enterprise_id for order in orders]
    rng.shuffle(refs)
    subscriptions = {
        (row.get("metadata") or {}).get("tandem_order"): row
        for row in _records(sandbox, "billing", "subscriptions")
        if row.get("status") in ("active", "trialing", "past_due")
    }
    invoices: dict[str, list[dict[str, Any]]] = {}
    for row in _records(sandbox, "billing", "invoices"):
        order_ref = ((row.get("subscription_details") or {}).get("metadata") or {}).get(
            "tandem_order"
        )
        if order_ref and row.get("status") == "open":
            invoices.setdefault(order_ref, []).append(row)
    sales_orders = {row.get("externalId"): row for row in _records(sandbox, "erp", "salesorders")}
    injected: list[dict[str, str]] = []
    used: set[str] = set()

    def pick(candidates: Mapping[Any, Any], what: str) -> str:
        for ref in refs:
            if ref not in used and candidates.get(ref):
                used.add(ref)
                return ref
        raise SimulationError(f"no order of this run left with {what}: approve more quotes")

    ref = pick(invoices, "an open billing invoice")
    invoice = invoices[ref][0]
    sandbox.control("POST", f"/billing/invoices/{invoice['id']}/void")  # no event: unseen
    injected.append(_drift("status", "billing", _tandem_ref("billing", "invoice", invoice["id"])))

    ref = pick(subscriptions, "a live billing subscription")
    subscription = subscriptions[ref]
    sandbox.delete("billing", f"/subscriptions/{subscription['id']}")
    contract = _tandem_ref("billing", "subscription", subscription["id"])
    injected.append(_drift("status", "billing", contract))

    ref = pick(invoices, "an open billing invoice")
    invoice = invoices[ref][0]
    sandbox.control("POST", f"/billing/invoices/{invoice['id']}/duplicate")
    original = _tandem_ref("billing", "invoice", invoice["id"])
    injected.append(_drift("duplicate_downstream", "billing", original))

    ref = pick(sales_orders, "an ERP sales order")
    sales_order = sales_orders[ref]
    line = sales_order["item"]["items"][0]
    quantity = int(float(line["quantity"])) + 1
    sandbox.control(
        "POST",
        f"/erp/salesorders/{sales_order['internalId']}/lines/{line['line']}",
        {"quantity": quantity},
    )
    injected.append(
        _drift("amount", "erp", _tandem_ref("erp", "sales_order", sales_order["internalId"]))
    )
    return sorted(injected, key=_key)


def month_end(
    *,
    quotes: int,
    seed: int = 1,
    sandbox_url: str | None = None,
    timeout: float = 900.0,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> MonthEnd:
    """Run quote to cash for ``quotes`` quotes (at least four: each drift is made on a
    different order), make the known drift, reconcile, and compare what was found with what
    was made. Raises ``SimulationError`` when quote to cash did not settle or the drift could
    not be made; the result's ``ok`` says whether reconciliation found exactly the drift."""
    if quotes < len(DRIFT_KINDS):
        raise SimulationError(f"the month-end rehearsal needs at least {len(DRIFT_KINDS)} quotes")
    started = timezone.now() - dt.timedelta(seconds=1)
    url = (sandbox_url or settings.CONNECTOR_SANDBOX_URL).rstrip("/")
    summary = simulate(
        quotes=quotes, seed=seed, sandbox_url=url, timeout=timeout, progress=progress
    )
    result = MonthEnd(quotes=summary)
    if not summary.ok:
        raise SimulationError(f"quote to cash did not settle: {summary.as_dict()}")
    orders = list(
        Order.objects.filter(created_at__gte=started, state=OrderState.ACTIVE).order_by("pk")
    )
    # The rehearsal drives the sandbox: this process's connectors read it with the sandbox's
    # keys unless others are configured (as the demo's worker does).
    for system in (ReconciledSystem.BILLING, ReconciledSystem.ERP):
        os.environ.setdefault(f"CONNECTOR_{system.upper()}_API_KEY", default_api_key(system))
    result.baseline, _ = _reconcile()
    result.injected = _drift_inject(Sandbox(url=url), random.Random(seed), orders)
    found, result.runs = _reconcile()
    before = {_key(item) for item in result.baseline}
    result.found = sorted((item for item in found if _key(item) not in before), key=_key)
    made = {_key(item) for item in result.injected}
    seen = {_key(item) for item in result.found}
    result.missed = [item for item in result.injected if _key(item) not in seen]
    result.unexpected = [item for item in result.found if _key(item) not in made]
    result.ok = not result.missed and not result.unexpected
    return result
