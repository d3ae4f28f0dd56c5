"""Writes to the canonical commercial records. Keyword-only, one transaction each, audited.

Every service takes the ``actor`` (a person or a system actor) and a ``reason``; the history
rows it writes carry both. State changes go through ``transition_apply``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import Refused, TransitionRefused, invalid_refused, reason_require
from core.identifiers import PREFIXES, identifier_allocate
from core.money import Money, validate_currency
from core.records import BillingPeriod, LineKind, record_full_clean
from core.transitions import transition_apply, transition_check
from masterdata.locks import lock_account_survivor
from masterdata.models import Account, LegalEntity, Product
from q2c.locks import lock_contract, lock_invoice, lock_payment, lock_quote
from q2c.models import (
    CommercialLine,
    Contract,
    ContractLine,
    ContractState,
    ContractVersion,
    CreditNote,
    Invoice,
    InvoiceLine,
    Order,
    OrderLine,
    Payment,
    Quote,
    QuoteLine,
    Refund,
    VersionKind,
    VersionState,
)


@dataclass(frozen=True)
class LineInput:
    """One commercial line as received (from CPQ, an amendment, the admin)."""

    product_code: str
    kind: str
    quantity: Decimal
    unit_price: Decimal
    description: str = ""
    discount_percent: Decimal = Decimal("0")
    billing_period: str = BillingPeriod.NONE
    term_start: dt.date | None = None
    term_end: dt.date | None = None
    product: Product | None = field(default=None, compare=False)


def _check_lines(lines: list[LineInput]) -> None:
    if not lines:
        raise Refused("at least one line is required", kind=Refused.Kind.INVALID)
    for number, line in enumerate(lines, start=1):
        for name in ("quantity", "unit_price", "discount_percent"):
            value = getattr(line, name)
            if isinstance(value, float) or not isinstance(value, Decimal):
                raise Refused(
                    f"line {number}: {name} must be a Decimal, got {value!r}",
                    kind=Refused.Kind.INVALID,
                )
        if line.quantity < 0:
            raise Refused(
                f"line {number}: quantity must not be negative", kind=Refused.Kind.INVALID
            )
        if line.unit_price < 0:
            raise Refused(
                f"line {number}: unit price must not be negative", kind=Refused.Kind.INVALID
            )
        if not Decimal(0) <= line.discount_percent <= Decimal(100):
            raise Refused(
                f"line {number}: discount must be between 0 and 100 percent",
                kind=Refused.Kind.INVALID,
            )
        if line.kind not in LineKind.values:
            raise Refused(
                f"line {number}: unknown line kind {line.kind!r}", kind=Refused.Kind.INVALID
            )
        if line.term_start and line.term_end and line.term_end < line.term_start:
            raise Refused(
                f"line {number}: the term ends before it starts", kind=Refused.Kind.INVALID
            )


def _line_fields(number: int, line: LineInput) -> dict[str, object]:
    product = line.product
    if product is None:
        product = Product.objects.filter(sku=line.product_code).first()
    values: dict[str, object] = {
        "line_no": number,
        "product": product,
        "product_code": line.product_code,
        "description": line.description or (product.name if product else ""),
        "kind": line.kind,
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "discount_percent": line.discount_percent,
        "billing_period": line.billing_period,
        "term_start": line.term_start,
        "term_end": line.term_end,
    }
    return values


def _create_lines(
    model: type[CommercialLine], parent: dict[str, object], lines: list[LineInput]
) -> Decimal:
    total = Decimal("0")
    for number, line in enumerate(lines, start=1):
        row = model(**parent, **_line_fields(number, line))
        row.amount = row.computed_amount()
        record_full_clean(row, exclude=[*parent.keys()])
        row.save()
        total += row.amount
    return total


# --- Quotes and orders ----------------------------------------------------------------------


def quote_create(
    *,
    cpq_quote_id: str,
    account: Account | None,
    legal_entity: LegalEntity,
    currency: str,
    approved_at: dt.datetime,
    lines: list[LineInput],
    valid_until: dt.date | None = None,
    customer_snapshot: dict[str, object] | None = None,
    actor: Actor,
    reason: str,
) -> Quote:
    """Create the quote CPQ approved, with its lines and total, and a new ``QTE-…`` id.

    ``account`` may be None until the customer is resolved; ``customer_snapshot`` keeps the
    customer as CPQ sent it. Refuses (``ValidationError``) bad lines, an unknown currency or
    a naive ``approved_at``, and a blank reason; writes nothing then.
    """
    reason_require(reason)
    with invalid_refused():
        validate_currency(currency)
    _check_lines(lines)
    if timezone.is_naive(approved_at):
        raise Refused("approved_at must be timezone-aware", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        quote = Quote(
            enterprise_id=identifier_allocate(prefix=PREFIXES["quote"]),
            cpq_quote_id=cpq_quote_id,
            account=account,
            legal_entity=legal_entity,
            currency=currency,
            approved_at=approved_at,
            valid_until=valid_until,
            customer_snapshot=customer_snapshot or {},
        )
        record_full_clean(quote, exclude=["enterprise_id"])
        quote.save()
        quote.total_amount = _create_lines(QuoteLine, {"quote": quote}, lines)
        quote.save(update_fields=["total_amount", "updated_at"])
    return quote


def order_create(
    *,
    account: Account | None,
    legal_entity: LegalEntity,
    currency: str,
    lines: list[LineInput],
    quote: Quote | None = None,
    actor: Actor,
    reason: str,
) -> Order:
    """Create an order in ``received`` with its lines and its total."""
    reason_require(reason)
    with invalid_refused():
        validate_currency(currency)
    _check_lines(lines)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        order = Order(
            enterprise_id=identifier_allocate(prefix=PREFIXES["order"]),
            quote=quote,
            account=account,
            legal_entity=legal_entity,
            currency=currency,
        )
        record_full_clean(order, exclude=["enterprise_id", "quote"])
        order.save()
        order.total_amount = _create_lines(OrderLine, {"order": order}, lines)
        order.save(update_fields=["total_amount", "updated_at"])
    return order


def order_assign_account(*, order: Order, account: Account, actor: Actor, reason: str) -> Order:
    """Attach the resolved canonical customer to an order (and its quote), once."""
    reason_require(reason)
    if order.account_id is not None and order.account_id != account.pk:
        raise Refused(f"{order} already belongs to {order.account}", kind=Refused.Kind.STATE)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        # Waits for a merge of this account in progress and follows it to the survivor.
        account = lock_account_survivor(account.pk)
        order.account = account
        order.save(update_fields=["account", "updated_at"])
        quote = order.quote
        if quote is not None and quote.account_id is None:
            quote.account = account
            quote.save(update_fields=["account", "updated_at"])
    return order


def quote_correct_customer_snapshot(
    *, quote: Quote, snapshot: dict[str, object], actor: Actor, reason: str
) -> Quote:
    """Replace the customer as CPQ sent it with a corrected one (an approved replay's
    correction), before the customer is resolved. Writing the same snapshot again changes
    nothing and writes no history."""
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_quote(quote.pk)
        if locked.account_id is not None:
            raise Refused(
                f"{locked} already belongs to {locked.account}; its snapshot is no longer read",
                kind=Refused.Kind.STATE,
            )
        if locked.customer_snapshot != snapshot:
            locked.customer_snapshot = dict(snapshot)
            locked.save(update_fields=["customer_snapshot", "updated_at"])
    return locked


def order_lines_link_products(*, order: Order, actor: Actor, reason: str) -> int:
    """Link lines whose product code was not in the catalog when the order was made to the
    product of that SKU now in the catalog. Returns how many lines were linked."""
    reason_require(reason)
    linked = 0
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        for line in order.lines.select_for_update().filter(product__isnull=True).order_by("pk"):
            product = Product.objects.filter(sku=line.product_code).first()
            if product is None:
                continue
            line.product = product
            line.save(update_fields=["product"])
            linked += 1
    return linked


def quote_convert_to_order(*, quote: Quote, actor: Actor, reason: str) -> Order:
    """Turn an approved quote into an order carrying the same lines (once)."""
    # Refuse before creating the order: a converted quote already has one (one-to-one).
    transition_check(quote, "convert", actor=actor)
    with transaction.atomic():
        lines = [
            LineInput(
                product_code=line.product_code,
                product=line.product,
                kind=line.kind,
                quantity=line.quantity,
                unit_price=line.unit_price,
                description=line.description,
                discount_percent=line.discount_percent,
                billing_period=line.billing_period,
                term_start=line.term_start,
                term_end=line.term_end,
            )
            for line in quote.lines.all()
        ]
        order = order_create(
            account=quote.account,
            legal_entity=quote.legal_entity,
            currency=quote.currency,
            lines=lines,
            quote=quote,
            actor=actor,
            reason=reason,
        )
        transition_apply(quote, "convert", actor=actor, reason=reason)
    return order


def amendment_order_create(
    *,
    contract: Contract,
    cpq_quote_id: str,
    effective_date: dt.date,
    approved_at: dt.datetime,
    lines: list[LineInput],
    actor: Actor,
    reason: str,
) -> Order:
    """The order that carries an amendment of ``contract``: its quote (once per CPQ quote id)
    and an order with the contract's new lines, to take effect on ``effective_date``.

    The lines are the contract's lines as they will be, not the difference."""
    if contract.state != ContractState.ACTIVE:
        raise Refused(
            f"{contract.enterprise_id} is {contract.state}, not active", kind=Refused.Kind.STATE
        )
    if not contract.start_date <= effective_date <= contract.end_date:
        raise Refused(
            "an amendment takes effect within the contract term", kind=Refused.Kind.INVALID
        )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        quote = quote_create(
            cpq_quote_id=cpq_quote_id, account=contract.account,
            legal_entity=contract.legal_entity, currency=contract.currency,
            approved_at=approved_at, lines=lines, actor=actor, reason=reason,
        )  # fmt: skip
        order = quote_convert_to_order(quote=quote, actor=actor, reason=reason)
        order.amends = contract
        order.effective_date = effective_date
        order.save(update_fields=["amends", "effective_date", "updated_at"])
    return order


def order_validate(*, order: Order, actor: Actor, reason: str) -> Order:
    """``received`` → ``validated``, once it has lines, an account and a legal entity. Refused
    (with the operator's message) from any other state or while a condition is unmet.
    """
    return transition_apply(order, "validate", actor=actor, reason=reason)


def order_submit_to_erp(*, order: Order, actor: Actor, reason: str) -> Order:
    """``validated`` → ``submitted_to_erp``: the ERP has the sales order. Refused otherwise."""
    return transition_apply(order, "submit_to_erp", actor=actor, reason=reason)


def order_accept(
    *, order: Order, actor: Actor, reason: str, accepted_at: dt.datetime | None = None
) -> Order:
    """``submitted_to_erp`` → ``accepted``: the ERP accepted it financially, at ``accepted_at``
    (now unless given). Refused from any other state.
    """
    return transition_apply(
        order, "accept", actor=actor, reason=reason, accepted_at=accepted_at or timezone.now()
    )


def order_start_provisioning(*, order: Order, actor: Actor, reason: str) -> Order:
    """``accepted`` → ``provisioning``: the subscription exists. Refused from any other state."""
    return transition_apply(order, "start_provisioning", actor=actor, reason=reason)


def order_activate(*, order: Order, actor: Actor, reason: str) -> Order:
    """``provisioning`` → ``active``, stamping ``activated_at``. Refused from any other state."""
    return transition_apply(
        order, "activate", actor=actor, reason=reason, activated_at=timezone.now()
    )


def order_fulfil(*, order: Order, actor: Actor, reason: str) -> Order:
    """``active`` → ``fulfilled``. Refused from any other state."""
    return transition_apply(order, "fulfil", actor=actor, reason=reason)


def order_hold(*, order: Order, actor: Actor, reason: str) -> Order:
    """Put an order that is not active yet on hold, remembering where it was; ``reason`` is kept
    as the hold reason. Needs the ``hold_order`` permission for a person.
    """
    return transition_apply(order, "hold", actor=actor, reason=reason, reason_text=reason)


def order_release(*, order: Order, actor: Actor, reason: str) -> Order:
    """Take an order off hold, back to the state it was held in. Refused unless on hold."""
    return transition_apply(order, "release", actor=actor, reason=reason)


def order_reject(*, order: Order, actor: Actor, reason: str) -> Order:
    """Reject an order that is received, validated or submitted to the ERP; ``reason`` is kept
    as the rejection reason. Refused from any other state.
    """
    return transition_apply(order, "reject", actor=actor, reason=reason, reason_text=reason)


def order_cancel(*, order: Order, actor: Actor, reason: str) -> Order:
    """Cancel an order that is not active yet (or on hold); ``reason`` is kept as the
    cancellation reason. Needs the ``cancel_order`` permission for a person.
    """
    return transition_apply(order, "cancel", actor=actor, reason=reason, reason_text=reason)


# --- Contracts ------------------------------------------------------------------------------


def _add_version(
    *,
    contract: Contract,
    kind: str,
    effective_date: dt.date,
    lines: list[LineInput],
    order: Order | None,
) -> ContractVersion:
    last = contract.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = ContractVersion.objects.create(
        contract=contract, number=last + 1, kind=kind, effective_date=effective_date, order=order
    )
    _create_lines(ContractLine, {"version": version}, lines)
    return version


def contract_create(
    *,
    account: Account,
    legal_entity: LegalEntity,
    currency: str,
    start_date: dt.date,
    end_date: dt.date,
    lines: list[LineInput],
    order: Order | None = None,
    actor: Actor,
    reason: str,
) -> Contract:
    """A contract pending activation, with version 1 holding its recurring lines."""
    reason_require(reason)
    with invalid_refused():
        validate_currency(currency)
    _check_lines(lines)
    if end_date < start_date:
        raise Refused("the contract ends before it starts", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        contract = Contract(
            enterprise_id=identifier_allocate(prefix=PREFIXES["contract"]),
            account=account,
            legal_entity=legal_entity,
            order=order,
            currency=currency,
            start_date=start_date,
            end_date=end_date,
        )
        record_full_clean(contract, exclude=["enterprise_id", "order"])
        contract.save()
        _add_version(
            contract=contract,
            kind=VersionKind.INITIAL,
            effective_date=start_date,
            lines=lines,
            order=order,
        )
    return contract


def contract_active_version(*, contract: Contract) -> ContractVersion | None:
    """The contract's version in effect now, or None (before activation). Reads only."""
    return contract.versions.filter(state=VersionState.ACTIVE).first()


def version_take_effect(*, contract: Contract, version: ContractVersion) -> None:
    """Make ``version`` the one in effect, superseding the one before (inside the caller's
    transaction, with its locks)."""
    current = contract_active_version(contract=contract)
    if current is not None:
        current.supersede()
        current.save()
    version.activate()
    version.save()


def contract_activate(*, contract: Contract, actor: Actor, reason: str) -> Contract:
    """Activate the contract and its first pending version (after financial validation)."""
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        transition_apply(
            contract, "activate", actor=actor, reason=reason, activated_at=timezone.now()
        )
        version = contract.versions.filter(state=VersionState.PENDING).order_by("number").first()
        if version is not None:
            version_take_effect(contract=contract, version=version)
    return contract


def contract_amend(
    *,
    contract: Contract,
    effective_date: dt.date,
    lines: list[LineInput],
    order: Order | None = None,
    actor: Actor,
    reason: str,
) -> ContractVersion:
    """Record an amendment as a new version that takes effect at once."""
    reason_require(reason)
    _check_lines(lines)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        contract = lock_contract(contract.pk)
        if contract.state != ContractState.ACTIVE:
            raise TransitionRefused(
                record=contract, transition="amend", state=contract.state, allowed=["active"]
            )
        if not contract.start_date <= effective_date <= contract.end_date:
            raise Refused(
                "an amendment takes effect within the contract term", kind=Refused.Kind.INVALID
            )
        version = _add_version(
            contract=contract,
            kind=VersionKind.AMENDMENT,
            effective_date=effective_date,
            lines=lines,
            order=order,
        )
        version_take_effect(contract=contract, version=version)
        contract.save(update_fields=["updated_at"])
    return version


def contract_renew(
    *,
    contract: Contract,
    new_end_date: dt.date,
    lines: list[LineInput],
    order: Order | None = None,
    actor: Actor,
    reason: str,
) -> ContractVersion:
    """Extend the term: a renewal version, pending until the renewal term starts."""
    _check_lines(lines)
    if new_end_date <= contract.end_date:
        raise Refused("a renewal must end after the current term", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        renewal_start = contract.end_date + dt.timedelta(days=1)
        transition_apply(contract, "renew", actor=actor, reason=reason, new_end_date=new_end_date)
        return _add_version(
            contract=contract,
            kind=VersionKind.RENEWAL,
            effective_date=renewal_start,
            lines=lines,
            order=order,
        )


def contract_start_renewal_term(*, contract: Contract, actor: Actor, reason: str) -> Contract:
    """Start the renewal term: the contract moves on (``start_renewal_term``) and its first
    pending renewal version takes effect, superseding the one in effect. One transaction.
    """
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        transition_apply(contract, "start_renewal_term", actor=actor, reason=reason)
        version = (
            contract.versions.filter(state=VersionState.PENDING, kind=VersionKind.RENEWAL)
            .order_by("number")
            .first()
        )
        if version is not None:
            version_take_effect(contract=contract, version=version)
    return contract


def contract_cancel(
    *, contract: Contract, effective_date: dt.date, actor: Actor, reason: str
) -> Contract:
    """Cancel: a cancellation version (no lines) records when and why."""
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        transition_apply(contract, "cancel", actor=actor, reason=reason, reason_text=reason)
        last = contract.versions.order_by("-number").values_list("number", flat=True).first() or 0
        version = ContractVersion.objects.create(
            contract=contract,
            number=last + 1,
            kind=VersionKind.CANCELLATION,
            effective_date=effective_date,
        )
        version_take_effect(contract=contract, version=version)
    return contract


def contracts_expire_ended(*, today: dt.date) -> int:
    """Expire active contracts whose term ended before ``today`` and that are not renewing:
    an auto-renewing contract, or one with a change pending (a renewal or a cancellation on
    its way), is left to that change. Returns how many."""
    actor = Actor.system("worker")
    expired = 0
    ids = list(
        Contract.objects.filter(state=ContractState.ACTIVE, end_date__lt=today, auto_renew=False)
        .exclude(versions__state=VersionState.PENDING)
        .values_list("pk", flat=True)
        .distinct()
    )
    for pk in ids:
        with transaction.atomic():
            contract = lock_contract(pk)
            renewing = (
                contract.auto_renew or contract.versions.filter(state=VersionState.PENDING).exists()
            )
            if contract.state != ContractState.ACTIVE or contract.end_date >= today or renewing:
                continue
            transition_apply(
                contract, "expire", actor=actor, reason=f"term ended on {contract.end_date}"
            )
            expired += 1
    return expired


# --- Invoices and payments ------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceLineInput:
    description: str
    quantity: Decimal
    unit_price: Decimal
    product: Product | None = None
    period_start: dt.date | None = None
    period_end: dt.date | None = None


def invoice_create(
    *,
    account: Account,
    legal_entity: LegalEntity,
    currency: str,
    lines: list[InvoiceLineInput],
    contract: Contract | None = None,
    order: Order | None = None,
    number: str = "",
    issue_date: dt.date | None = None,
    due_date: dt.date | None = None,
    tax_amount: Decimal = Decimal("0"),
    contract_version: ContractVersion | None = None,
    actor: Actor,
    reason: str,
) -> Invoice:
    """A draft invoice (new ``INV-…`` id) with its lines, ``tax_amount`` and total (lines plus
    tax). Refuses (``ValidationError``) no lines, a float amount, a negative quantity, an
    unknown currency and a blank reason, writing nothing."""
    reason_require(reason)
    with invalid_refused():
        validate_currency(currency)
    if not lines:
        raise Refused("an invoice needs at least one line", kind=Refused.Kind.INVALID)
    for line in lines:
        if isinstance(line.quantity, float) or isinstance(line.unit_price, float):
            raise Refused("invoice amounts are Decimal, never float", kind=Refused.Kind.INVALID)
        if line.quantity < 0:
            raise Refused(
                "an invoice line quantity must not be negative", kind=Refused.Kind.INVALID
            )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        invoice = Invoice.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["invoice"]),
            account=account,
            legal_entity=legal_entity,
            contract=contract,
            contract_version=contract_version,
            order=order,
            currency=currency,
            number=number,
            issue_date=issue_date,
            due_date=due_date,
            tax_amount=tax_amount,
        )
        total = Decimal("0")
        for number_, line in enumerate(lines, start=1):
            amount = line.quantity * line.unit_price
            InvoiceLine.objects.create(
                invoice=invoice,
                line_no=number_,
                product=line.product,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=amount,
                period_start=line.period_start,
                period_end=line.period_end,
            )
            total += amount
        invoice.total_amount = total + tax_amount
        invoice.save(update_fields=["total_amount", "updated_at"])
    return invoice


def invoice_post(*, invoice: Invoice, actor: Actor, reason: str) -> Invoice:
    """``draft`` → ``posted`` (it needs a line), stamping ``posted_at``. Refused otherwise."""
    return transition_apply(invoice, "post", actor=actor, reason=reason, posted_at=timezone.now())


def invoice_void(*, invoice: Invoice, actor: Actor, reason: str) -> Invoice:
    """Void a draft or posted invoice; ``reason`` is kept as the void reason. Needs the
    ``void_invoice`` permission for a person.
    """
    return transition_apply(invoice, "void", actor=actor, reason=reason, reason_text=reason)


def payment_record(
    *,
    account: Account,
    amount: Money,
    received_at: dt.datetime,
    method: str = "",
    invoice: Invoice | None = None,
    actor: Actor,
    reason: str,
) -> Payment:
    """Record a payment received (unapplied) with a new ``PAY-…`` id; ``payment_apply`` puts
    it on an invoice (``invoice`` names the one it was made for, e.g. a failed attempt's).
    Refuses (``ValidationError``) an amount that is not positive, a naive ``received_at``
    and a blank reason.
    """
    reason_require(reason)
    if amount.amount <= 0:
        raise Refused("a payment amount must be positive", kind=Refused.Kind.INVALID)
    if timezone.is_naive(received_at):
        raise Refused("received_at must be timezone-aware", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        return Payment.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["payment"]),
            account=account,
            currency=amount.currency,
            amount=amount.amount,
            received_at=received_at,
            method=method,
            invoice=invoice,
        )


def payment_apply(*, payment: Payment, invoice: Invoice, actor: Actor, reason: str) -> Invoice:
    """Apply a payment to an invoice: partially paid or paid, never overpaid."""
    if payment.currency != invoice.currency:
        raise Refused(
            f"a {payment.currency} payment cannot pay a {invoice.currency} invoice",
            kind=Refused.Kind.INVALID,
        )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_invoice(invoice.pk)
        # A paid or void invoice takes no payment at all: say so, not "exceeds the balance".
        transition_check(locked, "apply_payment", actor=actor)
        balance = locked.total_amount - locked.amount_paid
        if payment.amount > balance:
            raise Refused(
                f"payment {payment.money} exceeds the open balance "
                f"{Money(balance, locked.currency)} of {locked.enterprise_id}",
                kind=Refused.Kind.STATE,
            )
        transition_apply(locked, "apply_payment", actor=actor, reason=reason, amount=payment.amount)
        transition_apply(payment, "apply", actor=actor, reason=reason, invoice=locked)
    return locked


def contract_version_on(*, contract: Contract, day: dt.date) -> ContractVersion | None:
    """The version of ``contract`` in force on ``day`` (the latest that had taken effect by
    then and was ever active), or None. Reads only."""
    return (
        contract.versions.filter(
            effective_date__lte=day, state__in=[VersionState.ACTIVE, VersionState.SUPERSEDED]
        )
        .order_by("-effective_date", "-number")
        .first()
    )


def payment_fail(*, payment: Payment, actor: Actor, reason: str) -> Payment:
    """``received`` → ``failed``: the attempt did not collect; ``reason`` is kept as the
    failure reason. Refused from any other state."""
    return transition_apply(payment, "fail", actor=actor, reason=reason, reason_text=reason)


def payment_refund(
    *,
    payment: Payment,
    amount: Money,
    refunded_at: dt.datetime,
    refund_reason: str = "",
    actor: Actor,
    reason: str,
) -> Refund:
    """Give back ``amount`` of an applied payment: a ``RFD-…`` refund record, the payment's
    refunded amount raised (``refunded`` once all of it is back). One transaction, the
    payment locked. Refuses another currency, a naive time, an amount that is not positive or
    exceeds what is left (``INVALID``), and a payment that is not applied (``STATE``)."""
    reason_require(reason)
    if amount.currency != payment.currency:
        raise Refused(
            f"a {amount.currency} refund cannot come from a {payment.currency} payment",
            kind=Refused.Kind.INVALID,
        )
    if timezone.is_naive(refunded_at):
        raise Refused("refunded_at must be timezone-aware", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_payment(payment.pk)
        transition_check(locked, "refund", actor=actor)
        left = locked.amount - locked.amount_refunded
        if not Decimal(0) < amount.amount <= left:
            raise Refused(
                f"a refund of {amount} from {locked.enterprise_id} must be positive and at most "
                f"the {Money(left, locked.currency)} not yet refunded",
                kind=Refused.Kind.INVALID,
            )
        transition_apply(locked, "refund", actor=actor, reason=reason, amount=amount.amount)
        refund = Refund(
            enterprise_id=identifier_allocate(prefix=PREFIXES["refund"]),
            payment=locked,
            invoice=locked.invoice,
            account=locked.account,
            currency=amount.currency,
            amount=amount.amount,
            refunded_at=refunded_at,
            reason=refund_reason,
        )
        record_full_clean(refund, exclude=["enterprise_id"])
        refund.save()
    return refund


def credit_note_mirror(
    *,
    invoice: Invoice,
    amount: Money,
    number: str,
    issued_at: dt.datetime,
    credit_reason: str,
    actor: Actor,
    reason: str,
) -> CreditNote:
    """A credit note billing issued against ``invoice``: created and ``issued`` at once (a
    ``CRN-…`` id). One transaction. Refuses another currency, an amount that is not positive
    or exceeds the invoice's total, and a naive time (``INVALID``)."""
    reason_require(reason)
    if amount.currency != invoice.currency:
        raise Refused(
            f"a {amount.currency} credit note cannot credit a {invoice.currency} invoice",
            kind=Refused.Kind.INVALID,
        )
    if not Decimal(0) < amount.amount <= invoice.total_amount:
        raise Refused(
            f"a credit note of {amount} must be positive and at most {invoice.total} "
            f"({invoice.enterprise_id})",
            kind=Refused.Kind.INVALID,
        )
    if timezone.is_naive(issued_at):
        raise Refused("issued_at must be timezone-aware", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        note = CreditNote(
            enterprise_id=identifier_allocate(prefix=PREFIXES["credit_note"]),
            invoice=invoice,
            account=invoice.account,
            currency=amount.currency,
            amount=amount.amount,
            reason=credit_reason or "credit note",
            number=number,
        )
        record_full_clean(note, exclude=["enterprise_id"])
        note.save()
        transition_apply(note, "issue", actor=actor, reason=reason, issued_at=issued_at)
    return note
