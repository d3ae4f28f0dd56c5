"""The lifecycle rehearsal's books on the real systems: per contract, what Tryton and Stripe
hold against what Tandem's contract versions say they should hold.

What Tandem's versions say (``tryton_expected``, ``stripe_expected``):

- Tryton, one ``sale.sale`` per reference (a return is a sale too, with negative quantities):
  the first order's sale (``ORD-…``); an amendment's sale for what it adds or its one-time
  lines (``ORD-…``) and its return for what it takes away (``ORD-…:return``); a renewal's
  sale (``CTR-…:v<n>``, made before the renewal's date); a cancellation's return for the
  unused period (``CTR-…:v<n>``, only when there is a credit). A parked (stale) version makes
  nothing. Tandem's credit notes of the contract are counted as ``account.invoice`` by their
  reference: expected once when Tandem started posting it to the ERP's receivables, else none.
- Stripe, one subscription per billing period of the first order (``ORD-…`` and
  ``ORD-…:<period>`` in its metadata), any status; the quantities of its items equal the
  recurring lines of the version in effect (line by line, sorted); a cancelled contract's
  subscriptions are canceled, the others active (billing hears of a change on its date).
  Not counted there: credit notes and usage totals (localstripe has neither Credit Notes nor
  Billing Meters; the scenario's usage products are not billed through Stripe).

``books_compare`` compares plain data, so it is tested without either system: a count
above one is a duplicate, any other difference a disagreement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.records import LineKind
from orchestration.workflows.lifecycle import version_reference
from q2c.models import Contract, ContractState, ContractVersion, VersionKind, VersionState

Facts = Mapping[str, int | str]  # a count (int) or a fact (str), by key

STRIPE_NOT_COUNTED = [
    "credit notes (localstripe has no Credit Notes API)",
    "usage totals (localstripe has no Billing Meters; usage lines are not billed in Stripe)",
]
EXAMPLES = 10


@dataclass
class SystemBooks:
    """One system's books against Tandem's: how many contracts agree, how many do not (with
    examples), and the records held more than once."""

    system: str
    contracts: int = 0
    agreeing: int = 0
    disagreeing: int = 0
    disagreeing_examples: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    records_expected: int = 0
    records_held: int = 0
    not_counted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.disagreeing or self.duplicates)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def books_compare(
    system: str,
    expected: Mapping[str, Facts],
    held: Mapping[str, Facts],
    *,
    not_counted: Iterable[str] = (),
) -> SystemBooks:
    """Compare, contract by contract, what ``system`` holds with what Tandem expects. Keys
    missing on a side count 0; a held count above one is a duplicate (every reference is
    expected at most once), any difference makes the contract disagree."""
    books = SystemBooks(system=system, not_counted=list(not_counted))
    for contract in sorted(set(expected) | set(held)):
        want, have = expected.get(contract, {}), held.get(contract, {})
        books.contracts += 1
        differences = []
        for key in sorted(set(want) | set(have)):
            wanted, found = want.get(key, 0), have.get(key, 0)
            if isinstance(wanted, int):
                books.records_expected += wanted
            if isinstance(found, int):
                books.records_held += found
                if found > 1:
                    books.duplicates += 1
                    if len(books.duplicate_examples) < EXAMPLES:
                        books.duplicate_examples.append(f"{contract} {key} x{found}")
            if wanted != found:
                differences.append(f"{key}: Tandem {wanted}, {system} {found}")
        if differences:
            books.disagreeing += 1
            if len(books.disagreeing_examples) < EXAMPLES:
                books.disagreeing_examples.append(f"{contract}: " + "; ".join(differences))
        else:
            books.agreeing += 1
    return books


# --- what Tandem's versions say -----------------------------------------------------------


def _net(unit_price: Decimal, discount_percent: Decimal) -> Decimal:
    return (unit_price - unit_price * discount_percent / Decimal(100)).quantize(Decimal("0.01"))


def _amendment_sale_and_return(version: ContractVersion) -> tuple[bool, bool]:
    """Whether an amendment makes an ERP sale (something added, or one-time lines) and a
    return (something taken away): its recurring lines against its base version's."""
    change: dict[tuple[str, Decimal], Decimal] = {}
    base = version.base_version
    for line in base.lines.all() if base is not None else []:
        if line.kind == LineKind.RECURRING:
            key = (line.product_code, _net(line.unit_price, line.discount_percent))
            change[key] = change.get(key, Decimal(0)) - line.quantity
    for line in version.lines.all():
        if line.kind == LineKind.RECURRING:
            key = (line.product_code, _net(line.unit_price, line.discount_percent))
            change[key] = change.get(key, Decimal(0)) + line.quantity
    one_time = version.order is not None and any(
        line.kind == LineKind.ONE_TIME for line in version.order.lines.all()
    )
    return any(q > 0 for q in change.values()) or one_time, any(q < 0 for q in change.values())


def tryton_expected(
    versions: list[ContractVersion], credit_notes: Mapping[str, bool]
) -> dict[str, int]:
    """One contract's Tryton records by key (see the module), from its versions and its
    credit notes (enterprise id: whether Tandem started posting it to the ERP)."""
    facts: dict[str, int] = {}
    for version in versions:
        live = version.state != VersionState.PARKED
        own = version_reference(version)
        facts[f"sale.sale {own}"] = 0
        if version.kind == VersionKind.RENEWAL:
            facts[f"sale.sale {own}"] = int(live)
        elif version.kind == VersionKind.CANCELLATION:
            facts[f"sale.sale {own}"] = int(live and bool(version.changes.get("credit")))
        if version.order is None:
            continue
        order = version.order.enterprise_id
        sale, given_back = version.kind == VersionKind.INITIAL, False
        if version.kind == VersionKind.AMENDMENT:
            sale, given_back = _amendment_sale_and_return(version)
        facts[f"sale.sale {order}"] = int(live and sale)
        facts[f"sale.sale {order}:return"] = int(live and given_back)
    for note, posted in credit_notes.items():
        facts[f"account.invoice {note}"] = int(posted)
    return facts


def stripe_expected(contract: Contract, versions: list[ContractVersion]) -> dict[str, int | str]:
    """One contract's Stripe subscriptions by key (see the module): counted by the first
    order's references, their items' quantities and their status."""
    first = next((v for v in versions if v.kind == VersionKind.INITIAL), None)
    if first is None or first.order is None:
        return {}
    periods = list(
        dict.fromkeys(
            line.billing_period for line in first.lines.all() if line.kind == LineKind.RECURRING
        )
    )
    order = first.order.enterprise_id
    references = [order] + [f"{order}:{period}" for period in periods[1:]]
    facts: dict[str, int | str] = {f"subscription {ref}": 1 for ref in references}
    active = next((v for v in reversed(versions) if v.state == VersionState.ACTIVE), None)
    by_period: dict[str, list[int]] = {}
    for line in active.lines.all() if active is not None else []:
        if line.kind == LineKind.RECURRING:
            by_period.setdefault(line.billing_period, []).append(int(line.quantity))
    for period, ref in zip(periods, references, strict=True):
        if contract.state == ContractState.CANCELLED:
            facts[f"status {ref}"] = "canceled"
            continue
        # billing hears of a change on its date: a cancellation still pending left it active
        facts[f"status {ref}"] = "active"
        facts[f"quantities {ref}"] = ",".join(str(q) for q in sorted(by_period.get(period, [])))
    return facts


def stripe_held(subscriptions: list[dict[str, Any]]) -> dict[str, int | str]:
    """One contract's Stripe subscriptions (plain dicts as Stripe returns them) as facts."""
    facts: dict[str, int | str] = {}
    for row in subscriptions:
        ref = (row.get("metadata") or {}).get("tandem_order") or row["id"]
        facts[f"subscription {ref}"] = int(facts.get(f"subscription {ref}", 0)) + 1
        status = str(row.get("status"))
        if status != "canceled" and row.get("cancel_at_period_end"):
            status = f"{status}, cancelling at period end"
        facts[f"status {ref}"] = status
        if status != "canceled":
            quantities = sorted(int(item.get("quantity") or 1) for item in row["items"]["data"])
            facts[f"quantities {ref}"] = ",".join(str(q) for q in quantities)
    return facts


# --- asking the systems ---------------------------------------------------------------------


def real_books(contract_ids: list[str]) -> dict[str, SystemBooks]:
    """Tryton's and Stripe's books of ``contract_ids`` against Tandem's versions, through the
    configured ERP and billing connectors (they must be Tryton's and Stripe's)."""
    from orchestration.connectors.registry import connector_for
    from orchestration.workflows.models import WorkflowRun
    from orchestration.workflows.receivables import KIND as RECEIVABLES
    from q2c.models import CreditNote

    erp, billing = connector_for("erp"), connector_for("billing")
    for name, connector, method in (
        ("ERP", erp, "invoices_count"),
        ("billing", billing, "subscriptions_of_contracts"),
    ):
        if not hasattr(connector, method):
            raise RuntimeError(f"the {name} connector {type(connector).__name__} has no {method}")
    contracts = list(
        Contract.objects.filter(enterprise_id__in=contract_ids).order_by("enterprise_id")
    )
    versions: dict[int, list[ContractVersion]] = {c.pk: [] for c in contracts}
    for version in (
        ContractVersion.objects.filter(contract__in=contracts)
        .select_related("contract", "order", "base_version")
        .prefetch_related("lines", "base_version__lines", "order__lines")
        .order_by("contract_id", "number")
    ):
        versions[version.contract_id].append(version)
    notes: dict[int, dict[str, bool]] = {c.pk: {} for c in contracts}
    posting = set(
        WorkflowRun.objects.filter(kind=RECEIVABLES, subject_id__startswith="CRN-").values_list(
            "subject_id", flat=True
        )
    )
    for note in CreditNote.objects.filter(contract__in=contracts):
        notes[note.contract_id][note.enterprise_id] = note.enterprise_id in posting
    tryton_want = {c.enterprise_id: tryton_expected(versions[c.pk], notes[c.pk]) for c in contracts}
    sales = [
        key.split(" ", 1)[1]
        for want in tryton_want.values()
        for key in want
        if key.startswith("sale.sale ")
    ]
    invoices = [
        key.split(" ", 1)[1]
        for want in tryton_want.values()
        for key in want
        if key.startswith("account.invoice ")
    ]
    held_sales = erp.sales_orders_count(references=sales)  # type: ignore[attr-defined]
    held_invoices = erp.invoices_count(references=invoices)  # type: ignore[attr-defined]
    tryton_held = {
        cid: {
            key: (held_sales if key.startswith("sale.sale ") else held_invoices)[
                key.split(" ", 1)[1]
            ]
            for key in want
        }
        for cid, want in tryton_want.items()
    }
    subscriptions = billing.subscriptions_of_contracts(  # type: ignore[attr-defined]
        references=[c.enterprise_id for c in contracts]
    )
    stripe_want = {c.enterprise_id: stripe_expected(c, versions[c.pk]) for c in contracts}
    stripe_have = {cid: stripe_held(rows) for cid, rows in subscriptions.items()}
    return {
        "tryton": books_compare("tryton", tryton_want, tryton_held),
        "stripe": books_compare("stripe", stripe_want, stripe_have, not_counted=STRIPE_NOT_COUNTED),
    }
