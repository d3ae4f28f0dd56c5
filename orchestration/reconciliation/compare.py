"""The comparison itself: pure, set-based, no database and no HTTP.

Tandem's rows are held in a dict by the system id they are linked to; the system's rows
stream past it page by page and each is joined to its Tandem row in O(1) (a dict join, never
one query per record). What is left on either side afterwards is missing on the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.money import ISO_4217

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TandemRow:
    """One canonical record as reconciliation sees it.

    ``key`` is the system's id it is linked to in the crosswalk (``""``: none); a negative
    ``amount`` means Tandem cannot say what the system's record should amount to (status
    only);
    ``reference`` is the Tandem reference the system's record carries (the order's or
    contract's), ``group`` what makes two system records duplicates of each other."""

    key: str
    ref: str
    reference: str
    currency: str
    amount: Decimal
    status: str
    tax: Decimal = ZERO
    paid: Decimal = ZERO
    group: str = ""
    legal_entity: str = ""
    # How far the system's amount may be from ``amount`` by rounding alone: systems price
    # each unit at its net rate rounded to the currency's minor unit, Tandem the whole line
    # (half a minor unit per unit, at most).
    slack: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class RemoteRow:
    key: str
    reference: str
    currency: str
    amount: Decimal
    status: str
    tax: Decimal = ZERO
    paid: Decimal = ZERO
    group: str = ""
    number: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    drift_type: str
    object_type: str
    tandem: TandemRow | None
    remote: RemoteRow | None
    detail: str

    @property
    def tandem_ref(self) -> str:
        return self.tandem.ref if self.tandem else ""

    @property
    def remote_ref(self) -> str:
        return self.remote.key if self.remote else ""

    @property
    def key(self) -> str:
        """What names this difference across runs."""
        subject = self.remote_ref or (self.tandem.key if self.tandem else "") or "-"
        return f"{self.object_type}:{self.tandem_ref or '-'}:{subject}:{self.drift_type}"


@dataclass(frozen=True)
class Spec:
    """How one kind of record is compared with one system."""

    system: str
    object_type: str
    # Whether a Tandem status and a system status say the same thing.
    status_agrees: Callable[[str, str], bool]
    compare_tax: bool = False
    compare_paid: bool = False
    # Whether a duplicate must also carry the same amount as the record it duplicates.
    duplicate_same_amount: bool = False
    # The version drift type for records whose amount is the contract's active version.
    amount_type: str = "amount"


@dataclass
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    tandem_rows: int = 0
    remote_rows: int = 0
    # What this comparison looked at: open drift on these is closed if not found again.
    # (Filled on incremental runs only: a full run examined everything.)
    tandem_refs: set[str] = field(default_factory=set)
    remote_keys: set[str] = field(default_factory=set)
    # Linked Tandem rows the system did not list (an incremental run: it did not change).
    leftover: list[TandemRow] = field(default_factory=list)


def _places(currency: str) -> Decimal:
    return Decimal(1).scaleb(-ISO_4217.get(currency, 2))


def same_money(a: Decimal, b: Decimal, currency: str) -> bool:
    """Equal once both are rounded to the currency's minor units (Tandem keeps 4 places,
    systems keep the currency's)."""
    if a == b:
        return True
    quantum = _places(currency)
    return a.quantize(quantum) == b.quantize(quantum)


def pair_compare(spec: Spec, tandem: TandemRow, remote: RemoteRow) -> Iterator[Finding]:
    """Every difference between one Tandem record and the system record linked to it."""
    if tandem.currency != remote.currency:
        yield Finding(
            "currency", spec.object_type, tandem, remote,
            f"{tandem.currency} in Tandem, {remote.currency} in {spec.system}",
        )  # fmt: skip
    elif (
        tandem.amount >= 0
        and not same_money(tandem.amount, remote.amount, tandem.currency)
        and abs(tandem.amount - remote.amount) > tandem.slack
    ):
        yield Finding(
            spec.amount_type, spec.object_type, tandem, remote,
            f"{tandem.amount.quantize(_places(tandem.currency))} in Tandem, "
            f"{remote.amount.quantize(_places(remote.currency))} in {spec.system}",
        )  # fmt: skip
    elif spec.compare_tax and not same_money(tandem.tax, remote.tax, tandem.currency):
        yield Finding(
            "tax", spec.object_type, tandem, remote,
            f"tax {tandem.tax.quantize(_places(tandem.currency))} in Tandem, "
            f"{remote.tax.quantize(_places(remote.currency))} in {spec.system}",
        )  # fmt: skip
    if not spec.status_agrees(tandem.status, remote.status):
        yield Finding(
            "status", spec.object_type, tandem, remote,
            f"{tandem.status} in Tandem, {remote.status} in {spec.system}",
        )  # fmt: skip
    elif (
        spec.compare_paid
        and tandem.currency == remote.currency
        and not same_money(tandem.paid, remote.paid, tandem.currency)
    ):
        yield Finding(
            "status", spec.object_type, tandem, remote,
            f"paid {tandem.paid.quantize(_places(tandem.currency))} in Tandem, "
            f"{remote.paid.quantize(_places(remote.currency))} in {spec.system}",
        )  # fmt: skip


def reconcile(
    spec: Spec,
    *,
    tandem_rows: Iterable[TandemRow],
    remote_pages: Iterable[Iterable[RemoteRow]],
    tandem_by_keys: Callable[[set[str]], Iterable[TandemRow]] | None = None,
    tandem_by_references: Callable[[set[str]], Iterable[TandemRow]] | None = None,
    report_unmatched_tandem: bool = True,
) -> Outcome:
    """Join ``tandem_rows`` with the system's rows as they stream in.

    ``tandem_by_keys(keys)`` (incremental runs) gives the Tandem rows linked to ``keys`` that
    ``tandem_rows`` did not include: an incremental run reads only what changed on the Tandem
    side, then, one bulk read per page, what the system's changes need.
    ``tandem_by_references(references)`` gives the Tandem rows carrying ``references``, to
    tell a duplicate in the system from a record missing in Tandem.
    Linked Tandem rows left without a system row are reported missing in the system only
    when ``report_unmatched_tandem`` (a full read of the system)."""
    outcome = Outcome()
    # What was examined matters only to an incremental run (a full one examines everything).
    track = not report_unmatched_tandem
    linked: dict[str, TandemRow] = {}
    unlinked: list[TandemRow] = []
    for row in tandem_rows:
        outcome.tandem_rows += 1
        if row.key:
            linked[row.key] = row
        else:
            unlinked.append(row)
    unmatched: list[RemoteRow] = []
    for page in remote_pages:
        page_rows = list(page)
        outcome.remote_rows += len(page_rows)
        if tandem_by_keys is not None:
            wanted = {row.key for row in page_rows if row.key not in linked}
            if wanted:
                for extra in tandem_by_keys(wanted):
                    linked.setdefault(extra.key, extra)
        for remote in page_rows:
            if track:
                outcome.remote_keys.add(remote.key)
            tandem = linked.pop(remote.key, None)
            if tandem is None:
                unmatched.append(remote)
                continue
            if track:
                outcome.tandem_refs.add(tandem.ref)
            if (
                tandem.amount == remote.amount
                and tandem.currency == remote.currency
                and tandem.tax == remote.tax
                and tandem.paid == remote.paid
                and spec.status_agrees(tandem.status, remote.status)
            ):
                continue  # the common case, decided without building anything
            outcome.findings.extend(pair_compare(spec, tandem, remote))
    missing = f"missing_in_{spec.system}"
    if not report_unmatched_tandem:
        outcome.leftover = list(linked.values())
    else:
        for tandem in linked.values():
            outcome.tandem_refs.add(tandem.ref)
            outcome.findings.append(
                Finding(
                    missing,
                    spec.object_type,
                    tandem,
                    None,
                    f"{tandem.ref} is linked to {spec.system} {tandem.key}, which "
                    f"{spec.system} does not list",
                )
            )
    for tandem in unlinked:
        outcome.tandem_refs.add(tandem.ref)
        outcome.findings.append(
            Finding(
                missing,
                spec.object_type,
                tandem,
                None,
                f"{tandem.ref} should be in {spec.system} and is not linked to any record there",
            )
        )
    outcome.findings.extend(_unmatched_remote(spec, unmatched, tandem_by_references))
    return outcome


def _unmatched_remote(
    spec: Spec,
    unmatched: list[RemoteRow],
    tandem_by_references: Callable[[set[str]], Iterable[TandemRow]] | None,
) -> Iterator[Finding]:
    """A system record nothing in Tandem is linked to: a duplicate of a record that is (the
    same Tandem reference and group), or missing in Tandem."""
    groups: dict[tuple[str, str], list[TandemRow]] = {}
    references = {row.reference for row in unmatched if row.reference}
    if references and tandem_by_references is not None:
        for tandem in tandem_by_references(references):
            groups.setdefault((tandem.reference, tandem.group), []).append(tandem)
    for remote in unmatched:
        original = next(
            (
                tandem
                for tandem in groups.get((remote.reference, remote.group), [])
                if not spec.duplicate_same_amount
                or (
                    tandem.currency == remote.currency
                    and same_money(tandem.amount, remote.amount, remote.currency)
                )
            ),
            None,
        )
        if original is not None and original.key and original.key != remote.key:
            yield Finding(
                "duplicate_downstream", spec.object_type, original, remote,
                f"{spec.system} {remote.key} duplicates {original.key} of {original.ref}",
            )  # fmt: skip
        else:
            yield Finding(
                "missing_in_tandem", spec.object_type, None, remote,
                f"{spec.system} {spec.object_type} {remote.key}"
                f"{' for ' + remote.reference if remote.reference else ''} is not in Tandem",
            )  # fmt: skip


def row_record(row: TandemRow | RemoteRow | None) -> dict[str, Any]:
    """A row as JSON for the drift item's drill-down."""
    if row is None:
        return {}
    return {
        name: str(getattr(row, name))
        if isinstance(getattr(row, name), Decimal)
        else getattr(row, name)
        for name in row.__slots__  # type: ignore[union-attr]
    }


def row_from_record(record: dict[str, Any]) -> RemoteRow | None:
    """A system row back from a drift item's ``remote_record``."""
    if not record:
        return None
    values = dict(record)
    for name in ("amount", "tax", "paid"):
        values[name] = Decimal(str(values.get(name) or "0"))
    return RemoteRow(**{name: values[name] for name in RemoteRow.__slots__ if name in values})
