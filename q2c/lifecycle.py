"""Contract versions as the spine of every change after the first order.

Every change (an amendment, a renewal, a cancellation) is recorded first as a *pending*
``ContractVersion`` that names the version it amends, the cause (an order, an event, an
operator, the schedule) and what changed; the systems are told by the change's workflow;
then the version is *applied* (takes effect) on its effective date, never before its base.

- A change against a version not yet active waits: it is recorded on top of the pending one
  and applies only after it.
- A change against a version that another change already built on is *stale*: recorded as
  ``parked`` with the reason and a problem for a person, never applied.
- Two concurrent changes serialise on the contract's row lock: the second sees the first.
- The same change again (its ``change_key``) finds the version already recorded.

Keyword-only, one transaction each, audited (actor and reason on every history row).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import Refused, reason_require
from core.identifiers import PREFIXES, identifier_allocate
from core.problems import Category, Problem, Severity, problem_raise
from core.transitions import transition_apply
from q2c import services
from q2c.locks import lock_contract
from q2c.models import (
    Contract,
    ContractChangeRequest,
    ContractLine,
    ContractState,
    ContractVersion,
    CreditNote,
    CreditNoteState,
    Invoice,
    Order,
    VersionCause,
    VersionKind,
    VersionState,
)
from q2c.services import LineInput, _check_lines, _create_lines

CENT = Decimal("0.01")
CANCEL_NOW = "now"  # cancelled on its date, the unused period credited
CANCEL_AT_TERM_END = "term_end"  # runs to the end of the term, nothing credited
PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True)
class ChangeRecorded:
    version: ContractVersion
    created: bool  # False: the same change (its key) was recorded before
    parked: bool  # True: stale, recorded parked and never applied


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved ``months`` calendar months on, clamped to the month's last day."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def net_price(line: ContractLine | LineInput) -> Decimal:
    """The unit price after the line's discount, to the cent."""
    net = line.unit_price - line.unit_price * line.discount_percent / Decimal(100)
    return net.quantize(CENT, rounding=ROUND_HALF_EVEN)


def line_inputs(version: ContractVersion) -> list[LineInput]:
    """The version's lines as inputs for another version."""
    return [
        LineInput(
            product_code=line.product_code, product=line.product, kind=line.kind,
            quantity=line.quantity, unit_price=line.unit_price, description=line.description,
            discount_percent=line.discount_percent, billing_period=line.billing_period,
            term_start=line.term_start, term_end=line.term_end,
        )
        for line in version.lines.select_related("product").order_by("line_no")
    ]  # fmt: skip


def _line_key(line: ContractLine | LineInput) -> str:
    return line.product_code


def version_changes(
    *, before: list[ContractLine] | list[LineInput], after: list[LineInput]
) -> list[dict[str, str]]:
    """What changed line by line (by product): quantities and net prices, from and to."""
    old = {_line_key(line): line for line in before}
    new = {_line_key(line): line for line in after}
    changes = []
    for code in sorted(set(old) | set(new)):
        was, now = old.get(code), new.get(code)
        from_qty = was.quantity.normalize() if was else Decimal(0)
        to_qty = now.quantity.normalize() if now else Decimal(0)
        from_price = net_price(was) if was else None
        to_price = net_price(now) if now else None
        if from_qty == to_qty and from_price == to_price:
            continue
        changes.append(
            {
                "product_code": code,
                "from_quantity": f"{from_qty:f}",
                "to_quantity": f"{to_qty:f}",
                "from_price": f"{from_price}" if from_price is not None else "",
                "to_price": f"{to_price}" if to_price is not None else "",
            }
        )
    return changes


def _latest_live(contract: Contract) -> ContractVersion | None:
    """The newest version that is not parked: what a new change must build on."""
    return contract.versions.exclude(state=VersionState.PARKED).order_by("-number").first()


def contract_change_record(
    *,
    contract: Contract,
    kind: str,
    effective_date: dt.date,
    lines: list[LineInput] | None,
    cause: str,
    cause_ref: str,
    change_key: str,
    actor: Actor,
    reason: str,
    base_number: int | None = None,
    order: Order | None = None,
    term_end: dt.date | None = None,
) -> ChangeRecorded:
    """Record a change of ``contract`` as a pending version on top of ``base_number`` (the
    newest live version when None). The contract's row is locked, so concurrent changes
    serialise. Returns the version (``created`` False for a change recorded before under
    ``change_key``; ``parked`` True when it was stale: recorded parked with a problem).

    Refuses (writing nothing) a blank reason, bad lines, a base that does not exist, a
    contract that is not active (pending activation: not yet; ended: never) and a date
    outside the term."""
    reason_require(reason)
    if kind not in (VersionKind.AMENDMENT, VersionKind.RENEWAL, VersionKind.CANCELLATION):
        raise Refused(f"{kind!r} is not a change of a contract", kind=Refused.Kind.INVALID)
    if cause not in VersionCause.values:
        raise Refused(f"unknown cause {cause!r}", kind=Refused.Kind.INVALID)
    if lines is not None:
        _check_lines(lines)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        contract = lock_contract(contract.pk)
        existing = contract.versions.filter(change_key=change_key).first() if change_key else None
        if existing is not None:
            return ChangeRecorded(existing, False, existing.state == VersionState.PARKED)
        if contract.state not in (ContractState.ACTIVE, ContractState.RENEWED):
            raise Refused(
                f"{contract.enterprise_id} is {contract.get_state_display().lower()}; "
                "only an active contract changes",
                kind=Refused.Kind.STATE,
            )
        latest = _latest_live(contract)
        assert latest is not None  # an active contract has its first version
        base = latest
        if base_number is not None:
            found = contract.versions.filter(number=base_number).first()
            if found is None:
                raise Refused(
                    f"{contract.enterprise_id} has no version {base_number}",
                    kind=Refused.Kind.INVALID,
                )
            base = found
        if kind != VersionKind.RENEWAL and not (
            contract.start_date <= effective_date <= contract.end_date
        ):
            raise Refused(
                "a change takes effect within the contract term", kind=Refused.Kind.INVALID
            )
        base_lines = list(base.lines.order_by("line_no"))
        new_lines = lines if lines is not None else []
        number = (
            contract.versions.order_by("-number").values_list("number", flat=True).first() or 0
        ) + 1
        changes: dict[str, object] = {"lines": version_changes(before=base_lines, after=new_lines)}
        if kind == VersionKind.RENEWAL:
            changes["term"] = {"from_end": str(contract.end_date), "to_end": str(term_end)}
        if kind == VersionKind.CANCELLATION:
            changes["cancel_on"] = str(effective_date)
        version = ContractVersion.objects.create(
            contract=contract, number=number, kind=kind, effective_date=effective_date,
            order=order, base_version=base, cause=cause, cause_ref=cause_ref[:255],
            change_key=change_key[:255], reason=reason, changes=changes, term_end=term_end,
        )  # fmt: skip
        _create_lines(ContractLine, {"version": version}, new_lines)
        stale = base.pk != latest.pk
        if stale:
            why = (
                f"v{number} ({kind}) amends v{base.number}, but v{latest.number} "
                f"({latest.kind}) already changed it; not applied"
            )
            version.park(reason_text=why)
            version.save()
            problem_raise(
                Problem(
                    category=Category.VALIDATION, message=f"{contract.enterprise_id}: {why}",
                    error_class="StaleContractChange", step="record_change",
                    severity=Severity.MEDIUM, correlation_id=contract.enterprise_id,
                    context={"version": number, "base": base.number, "latest": latest.number},
                ),
                actor=actor, reason=why,
            )  # fmt: skip
            return ChangeRecorded(version, True, True)
        contract.save(update_fields=["updated_at"])
    return ChangeRecorded(version, True, False)


def contract_version_park(
    *, version: ContractVersion, actor: Actor, reason: str
) -> ContractVersion:
    """Park a pending version that can no longer be applied (its workflow found it invalid),
    with the reason. A version already parked is left as it is."""
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        lock_contract(version.contract_id)
        locked = ContractVersion.objects.get(pk=version.pk)
        if locked.state == VersionState.PENDING:
            locked.park(reason_text=reason)
            locked.save()
    return locked


def version_is_due(version: ContractVersion, *, today: dt.date) -> bool:
    """Whether a pending version may take effect on ``today``: its date has come and the
    version it amends is the one in effect (never applied before or around its base)."""
    if version.state != VersionState.PENDING or version.effective_date > today:
        return False
    base = version.base_version
    return base is not None and base.state == VersionState.ACTIVE


def versions_due(*, today: dt.date, contract: Contract | None = None) -> list[ContractVersion]:
    """Pending changes whose date has come and whose base is in effect, oldest first."""
    found = ContractVersion.objects.filter(
        state=VersionState.PENDING,
        effective_date__lte=today,
        base_version__state=VersionState.ACTIVE,
    ).exclude(kind=VersionKind.INITIAL)
    if contract is not None:
        found = found.filter(contract=contract)
    return list(found.select_related("contract", "order").order_by("effective_date", "pk"))


def contract_version_apply(
    *, version: ContractVersion, actor: Actor, reason: str, today: dt.date | None = None
) -> ContractVersion:
    """The pending version takes effect: it becomes the active one (the base superseded) and
    the contract follows (a renewal starts its term, a cancellation cancels it). Applying a
    version already active changes nothing. Refuses (STATE) a parked version, one whose date
    has not come, and one whose base is not the version in effect (it waits)."""
    reason_require(reason)
    today = today or timezone.localdate()
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        contract = lock_contract(version.contract_id)
        locked = ContractVersion.objects.select_related("base_version").get(pk=version.pk)
        if locked.state == VersionState.ACTIVE:
            return locked
        if locked.state != VersionState.PENDING:
            raise Refused(
                f"{contract.enterprise_id} v{locked.number} is {locked.state}; not applied",
                kind=Refused.Kind.STATE,
            )
        if not version_is_due(locked, today=today):
            base = locked.base_version
            raise Refused(
                f"{contract.enterprise_id} v{locked.number} waits: it takes effect on "
                f"{locked.effective_date}, after v{base.number if base else '?'}",
                kind=Refused.Kind.STATE,
            )
        services.version_take_effect(contract=contract, version=locked)
        if locked.kind == VersionKind.RENEWAL and contract.state == ContractState.RENEWED:
            transition_apply(contract, "start_renewal_term", actor=actor, reason=reason)
        elif locked.kind == VersionKind.CANCELLATION:
            transition_apply(contract, "cancel", actor=actor, reason=reason, reason_text=reason)
        else:
            contract.save(update_fields=["updated_at"])
    return locked


# --- renewals -------------------------------------------------------------------------------


def renewal_lines(contract: Contract, version: ContractVersion) -> list[LineInput]:
    """The lines of the next term: the version's, prices raised by the contract's uplift."""
    factor = Decimal(1) + contract.renewal_uplift_percent / Decimal(100)
    term_start = contract.end_date + dt.timedelta(days=1)
    term_end = add_months(term_start, contract.renewal_term_months) - dt.timedelta(days=1)
    return [
        LineInput(
            product_code=line.product_code, product=line.product, kind=line.kind,
            quantity=line.quantity,
            unit_price=(line.unit_price * factor).quantize(CENT, rounding=ROUND_HALF_EVEN),
            description=line.description, discount_percent=line.discount_percent,
            billing_period=line.billing_period, term_start=term_start, term_end=term_end,
        )
        for line in line_inputs(version)
    ]  # fmt: skip


def contract_renewal_record(
    *,
    contract: Contract,
    term_end: dt.date,
    lines: list[LineInput],
    cause: str,
    cause_ref: str,
    change_key: str,
    actor: Actor,
    reason: str,
) -> ChangeRecorded:
    """A renewal: a version for the next term (from the day after the term ends to
    ``term_end``), pending until that day; the contract shows ``renewed`` (renewal pending)
    with its new end. A renewal of a contract already renewing is stale (parked)."""
    if term_end <= contract.end_date:
        raise Refused("a renewal must end after the current term", kind=Refused.Kind.INVALID)
    with transaction.atomic():
        # A renewal renews the version in effect: with another change pending on top of it
        # (a renewal already under way), it is stale and parked.
        current = services.contract_active_version(contract=lock_contract(contract.pk))
        recorded = contract_change_record(
            contract=contract, kind=VersionKind.RENEWAL,
            effective_date=contract.end_date + dt.timedelta(days=1), lines=lines, cause=cause,
            cause_ref=cause_ref, change_key=change_key, actor=actor, reason=reason,
            term_end=term_end, base_number=current.number if current else None,
        )  # fmt: skip
        if recorded.created and not recorded.parked:
            locked = lock_contract(contract.pk)
            transition_apply(locked, "renew", actor=actor, reason=reason, new_end_date=term_end)
    return recorded


def contracts_renewal_due(*, today: dt.date, lead_days: int = 0) -> list[Contract]:
    """Active auto-renewing contracts whose term ends within ``lead_days`` of ``today`` (or
    has ended) and that have no pending change."""
    return list(
        Contract.objects.filter(
            state=ContractState.ACTIVE,
            auto_renew=True,
            end_date__lte=today + dt.timedelta(days=lead_days),
        )
        .exclude(versions__state=VersionState.PENDING)
        .order_by("end_date", "pk")
    )


def contract_auto_renew(*, contract: Contract, actor: Actor) -> ChangeRecorded:
    """Record the automatic renewal of an auto-renewing contract for the term after its
    current one (once per term: the key names the term's end)."""
    with transaction.atomic():
        locked = lock_contract(contract.pk)
        if not locked.auto_renew:
            raise Refused(
                f"{locked.enterprise_id} does not renew automatically", kind=Refused.Kind.STATE
            )
        current = services.contract_active_version(contract=locked)
        if current is None:
            raise Refused(
                f"{locked.enterprise_id} has no version in effect", kind=Refused.Kind.STATE
            )
        lines = renewal_lines(locked, current)
        term_end = lines[0].term_end if lines and lines[0].term_end else locked.end_date
        return contract_renewal_record(
            contract=locked, term_end=term_end, lines=lines, cause=VersionCause.SCHEDULE,
            cause_ref="auto-renewal", change_key=f"auto-renewal:v{current.number}", actor=actor,
            reason=f"automatic renewal at term end {locked.end_date}"
            + (f", uplift {locked.renewal_uplift_percent.normalize():f}%"
               if locked.renewal_uplift_percent else ""),
        )  # fmt: skip


def contract_renewal_terms_set(
    *,
    contract: Contract,
    auto_renew: bool,
    actor: Actor,
    reason: str,
    uplift_percent: Decimal | None = None,
    term_months: int | None = None,
) -> Contract:
    """Set whether the contract renews automatically (False: non-renewal, it ends at term end)
    and, when given, its uplift and renewal term."""
    reason_require(reason)
    if uplift_percent is not None and not Decimal(0) <= uplift_percent <= Decimal(100):
        raise Refused("the uplift is between 0 and 100 percent", kind=Refused.Kind.INVALID)
    if term_months is not None and term_months < 1:
        raise Refused("a renewal term is at least one month", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_contract(contract.pk)
        if locked.state in (ContractState.EXPIRED, ContractState.CANCELLED):
            raise Refused(f"{locked.enterprise_id} has ended", kind=Refused.Kind.STATE)
        locked.auto_renew = auto_renew
        if uplift_percent is not None:
            locked.renewal_uplift_percent = uplift_percent
        if term_months is not None:
            locked.renewal_term_months = term_months
        locked.save(
            update_fields=["auto_renew", "renewal_uplift_percent", "renewal_term_months",
                           "updated_at"]
        )  # fmt: skip
    return locked


# --- cancellations and credits ----------------------------------------------------------------


def _period_bounds(contract: Contract, period: str, on: dt.date) -> tuple[dt.date, dt.date]:
    """The billing period (from the contract's start) that contains ``on``: [start, end)."""
    months = PERIOD_MONTHS.get(period, 1)
    step = 0
    while add_months(contract.start_date, (step + 1) * months) <= on:
        step += 1
    start = add_months(contract.start_date, step * months)
    return start, add_months(contract.start_date, (step + 1) * months)


@dataclass(frozen=True)
class CreditLine:
    product_code: str
    description: str
    quantity: Decimal
    unit_credit: Decimal  # per unit, for the unused part of the period

    @property
    def amount(self) -> Decimal:
        return (self.quantity * self.unit_credit).quantize(CENT, rounding=ROUND_HALF_EVEN)


def unused_credit(
    *, contract: Contract, lines: list[ContractLine] | list[LineInput], on: dt.date
) -> list[CreditLine]:
    """What the unused part of the billing period containing ``on`` is worth, per line: the
    net unit price times the days left (from ``on``) over the period's days, to the cent.
    Lines with nothing left to credit are left out."""
    credits = []
    for line in lines:
        if line.kind != "recurring" or line.quantity <= 0:
            continue
        start, end = _period_bounds(contract, line.billing_period or "month", on)
        days = (end - start).days
        left = max((end - on).days, 0)
        unit = (net_price(line) * left / days).quantize(CENT, rounding=ROUND_HALF_EVEN)
        if unit > 0:
            credits.append(CreditLine(line.product_code, line.description, line.quantity, unit))
    return credits


def credit_note_for_version(
    *,
    version: ContractVersion,
    amount: Decimal,
    actor: Actor,
    reason: str,
) -> CreditNote:
    """The credit note (issued) for what ``version`` gives back, once per version: recording
    it again returns the first. Credits the contract's latest posted invoice when one is
    mirrored. Refuses an amount that is not positive."""
    reason_require(reason)
    if amount <= 0:
        raise Refused("a credit note amount must be positive", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        contract = lock_contract(version.contract_id)
        existing = CreditNote.objects.filter(contract_version=version).first()
        if existing is not None:
            return existing
        orders = [pk for pk in [contract.order_id] if pk] + list(
            Order.objects.filter(amends=contract).values_list("pk", flat=True)
        )
        invoice = (
            Invoice.objects.filter(Q(contract=contract) | Q(order_id__in=orders))
            .exclude(state="void")
            .order_by("-created_at", "-pk")
            .first()
        )
        note = CreditNote.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["credit_note"]),
            invoice=invoice, account=contract.account, currency=contract.currency,
            amount=amount, reason=reason, contract=contract, contract_version=version,
        )  # fmt: skip
        transition_apply(note, "issue", actor=actor, reason=reason)
    assert note.state == CreditNoteState.ISSUED
    return note


def contract_cancellation_record(
    *,
    contract: Contract,
    mode: str,
    cause: str,
    cause_ref: str,
    change_key: str,
    actor: Actor,
    reason: str,
    effective_date: dt.date | None = None,
    base_number: int | None = None,
) -> ChangeRecorded:
    """A cancellation: ``now`` (on ``effective_date``, today when None, the unused part of
    the billing period credited: the credit per line is kept on the version) or at term end
    (on the term's last day, nothing credited)."""
    if mode not in (CANCEL_NOW, CANCEL_AT_TERM_END):
        raise Refused(f"unknown cancellation {mode!r}", kind=Refused.Kind.INVALID)
    on = contract.end_date if mode == CANCEL_AT_TERM_END else effective_date
    on = on or timezone.localdate()
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        recorded = contract_change_record(
            contract=contract, kind=VersionKind.CANCELLATION, effective_date=on, lines=None,
            cause=cause, cause_ref=cause_ref, change_key=change_key, actor=actor, reason=reason,
            base_number=base_number,
        )  # fmt: skip
        version = recorded.version
        if recorded.created and version.base_version is not None:
            credit = (
                unused_credit(
                    contract=contract, lines=list(version.base_version.lines.all()), on=on
                )
                if mode == CANCEL_NOW
                else []
            )
            version.changes = {
                **version.changes,
                "mode": mode,
                "credit": [
                    {"product_code": c.product_code, "description": c.description,
                     "quantity": f"{c.quantity.normalize():f}", "unit_credit": str(c.unit_credit),
                     "amount": str(c.amount)}
                    for c in credit
                ],
                "credit_total": str(sum((c.amount for c in credit), Decimal("0.00"))),
            }  # fmt: skip
            version.save(update_fields=["changes"])
    return recorded


# --- maker-checker for changes that give money back ---------------------------------------------


def change_request_create(
    *,
    contract: Contract,
    action: str,
    payload: dict[str, object],
    preview: dict[str, object],
    actor: Actor,
    reason: str,
) -> ContractChangeRequest:
    """Ask for a change that credits the customer; nothing is sent until another person
    approves it. Refuses a blank reason and a request by a system actor."""
    reason_require(reason)
    if actor.is_system:
        raise Refused("a person asks for a credit", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        return ContractChangeRequest.objects.create(
            contract=contract, action=action, payload=payload, preview=preview, reason=reason,
            requested_by=actor.user,
        )  # fmt: skip


def change_request_decide(
    *, request: ContractChangeRequest, approve: bool, actor: Actor, reason: str
) -> ContractChangeRequest:
    """Approve or reject a requested change. Refuses the requester (four eyes), a person
    without ``q2c.approve_contract_change`` and a request already decided."""
    reason_require(reason)
    if actor.is_system or not actor.user.has_perm("q2c.approve_contract_change"):
        raise Refused("only finance operations approve or reject a credit", kind=Refused.Kind.STATE)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = ContractChangeRequest.objects.select_for_update().get(pk=request.pk)
        if locked.requested_by_id == actor.user.pk:
            raise Refused(
                "a second person approves a credit: you asked for this one",
                kind=Refused.Kind.STATE,
            )
        transition_apply(
            locked, "approve" if approve else "reject", actor=actor, reason=reason,
            by=actor.user, at=timezone.now(), note=reason,
        )  # fmt: skip
    return locked


def change_request_link_version(
    *, request: ContractChangeRequest, version: ContractVersion, actor: Actor, reason: str
) -> ContractChangeRequest:
    """Remember the version an approved request became."""
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = ContractChangeRequest.objects.select_for_update().get(pk=request.pk)
        locked.version = version
        locked.save(update_fields=["version"])
    return locked
