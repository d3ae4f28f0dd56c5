"""The canonical commercial records: quotes, orders, contracts, invoices, payments, usage.

State machines live here (django-fsm-2). A transition method only changes fields; services
call transitions inside a transaction and write the audit trail. State fields are protected
(no direct assignment) and ConcurrentTransitionMixin makes a racing stale copy fail with
``ConcurrentTransition`` instead of overwriting the winner.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import RETURN_VALUE, FSMField, transition

from core.audit import AuditedHistory
from core.money import AMOUNT_PLACES, AmountField, CurrencyField, Money, currency_check
from core.records import (
    BillingPeriod,
    CanonicalRecord,
    ConcurrentTransitions,
    LineKind,
    StatefulRecord,
)
from masterdata.models import Account, LegalEntity, Product


def _line_checks(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(quantity__gte=0), name=f"{prefix}_quantity_non_negative"
        ),
        models.CheckConstraint(
            condition=Q(unit_price__gte=0), name=f"{prefix}_unit_price_non_negative"
        ),
        models.CheckConstraint(
            condition=Q(discount_percent__gte=0) & Q(discount_percent__lte=100),
            name=f"{prefix}_discount_in_range",
        ),
        models.CheckConstraint(
            condition=Q(term_end__isnull=True)
            | Q(term_start__isnull=True)
            | Q(term_end__gte=F("term_start")),
            name=f"{prefix}_term_ordered",
        ),
    ]


class CommercialLine(models.Model):
    """What quote, order and contract lines share: a product, a kind, a price and a term."""

    line_no = models.PositiveIntegerField()
    product = models.ForeignKey(Product, on_delete=models.PROTECT, null=True, blank=True)
    product_code = models.CharField(max_length=64, help_text="The product code as received")
    description = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=20, choices=LineKind.choices)
    quantity = models.DecimalField(max_digits=18, decimal_places=4)
    unit_price = AmountField()
    discount_percent = models.DecimalField(max_digits=7, decimal_places=4, default=Decimal("0"))
    billing_period = models.CharField(
        max_length=10, choices=BillingPeriod.choices, blank=True, default=BillingPeriod.NONE
    )
    term_start = models.DateField(null=True, blank=True)
    term_end = models.DateField(null=True, blank=True)
    amount = AmountField(help_text="quantity x unit price less discount, per billing period")

    class Meta:
        abstract = True
        ordering = ["line_no"]

    def __str__(self) -> str:
        return f"line {self.line_no} {self.product_code}"

    def computed_amount(self) -> Decimal:
        """Rounded to the stored places: values read back from the database carry 4 places
        each, so their product would otherwise fail the field's decimal-places check."""
        gross = self.quantity * self.unit_price
        net = gross - gross * self.discount_percent / Decimal(100)
        return net.quantize(Decimal(1).scaleb(-AMOUNT_PLACES), rounding=ROUND_HALF_EVEN)


# --- Quote --------------------------------------------------------------------------------


class QuoteState(models.TextChoices):
    APPROVED = "approved", "Approved in CPQ"
    CONVERTED = "converted", "Converted to an order"
    REJECTED = "rejected", "Rejected"


class Quote(ConcurrentTransitions, StatefulRecord):
    cpq_quote_id = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="quotes", null=True, blank=True,
        help_text="empty until the customer is resolved to one canonical account",
    )  # fmt: skip
    customer_snapshot = models.JSONField(
        default=dict, blank=True, help_text="the customer as CPQ sent it, for identity resolution"
    )
    legal_entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="quotes")
    currency = CurrencyField()
    approved_at = models.DateTimeField()
    valid_until = models.DateField(null=True, blank=True)
    total_amount = AmountField()
    state = FSMField(default=QuoteState.APPROVED, choices=QuoteState.choices, protected=True)
    rejection_reason = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [currency_check("currency", "quote_currency_iso")]
        indexes = [models.Index(fields=["state", "state_changed_at"])]

    @property
    def total(self) -> Money:
        return Money(self.total_amount, self.currency)

    @transition(field=state, source=QuoteState.APPROVED, target=QuoteState.CONVERTED)
    def convert(self) -> None:
        self._entered_state()

    @transition(field=state, source=QuoteState.APPROVED, target=QuoteState.REJECTED)
    def reject(self, *, reason_text: str) -> None:
        self.rejection_reason = reason_text
        self._entered_state()


class QuoteLine(CommercialLine):
    quote = models.ForeignKey(Quote, on_delete=models.CASCADE, related_name="lines")

    history = AuditedHistory()

    class Meta(CommercialLine.Meta):
        constraints = [
            *_line_checks("quoteline"),
            models.UniqueConstraint(fields=["quote", "line_no"], name="quoteline_unique_no"),
        ]


# --- Order --------------------------------------------------------------------------------


class OrderState(models.TextChoices):
    RECEIVED = "received", "Received"
    VALIDATED = "validated", "Validated"
    SUBMITTED_TO_ERP = "submitted_to_erp", "Submitted to ERP"
    ACCEPTED = "accepted", "Financially accepted"
    PROVISIONING = "provisioning", "Provisioning"
    ACTIVE = "active", "Active"
    FULFILLED = "fulfilled", "Fulfilled"
    ON_HOLD = "on_hold", "On hold"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


ORDER_PRE_ACTIVE = [
    OrderState.RECEIVED,
    OrderState.VALIDATED,
    OrderState.SUBMITTED_TO_ERP,
    OrderState.ACCEPTED,
    OrderState.PROVISIONING,
]
ORDER_FINAL = [OrderState.FULFILLED, OrderState.REJECTED, OrderState.CANCELLED]


def _order_has_lines(order: Any) -> bool:
    """needs at least one line"""
    return order.pk is not None and order.lines.exists()


def _order_has_account(order: Any) -> bool:
    """needs an account and a legal entity"""
    return order.account_id is not None and order.legal_entity_id is not None


class Order(ConcurrentTransitions, StatefulRecord):
    quote = models.OneToOneField(
        Quote, on_delete=models.PROTECT, null=True, blank=True, related_name="order"
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="orders", null=True, blank=True,
        help_text="empty until the customer is resolved to one canonical account",
    )  # fmt: skip
    legal_entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="orders")
    currency = CurrencyField()
    total_amount = AmountField()
    state = FSMField(default=OrderState.RECEIVED, choices=OrderState.choices, protected=True)
    held_from_state = models.CharField(max_length=20, blank=True, choices=OrderState.choices)
    hold_reason = models.TextField(blank=True)
    rejection_reason = models.TextField(blank=True)
    cancellation_reason = models.TextField(blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # An amendment order changes an existing contract from ``effective_date`` on.
    amends = models.ForeignKey(
        "Contract", on_delete=models.PROTECT, related_name="amendment_orders",
        null=True, blank=True,
    )  # fmt: skip
    effective_date = models.DateField(null=True, blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            currency_check("currency", "order_currency_iso"),
            models.CheckConstraint(
                condition=Q(total_amount__gte=0), name="order_total_non_negative"
            ),
            models.CheckConstraint(
                condition=~Q(state=OrderState.ON_HOLD) | ~Q(held_from_state=""),
                name="order_hold_remembers_state",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "state_changed_at"]),
            models.Index(fields=["legal_entity", "state"]),
            models.Index(fields=["account", "state"]),
            # The order list filtered by state, newest first: read in index order, no sort.
            models.Index(fields=["state", "-created_at", "-id"], name="order_state_created_idx"),
            # The dashboard's cycle times (created -> active) over a window of activations,
            # read from the index alone.
            models.Index(
                fields=["activated_at"], include=["created_at"], name="order_activated_cycle_idx"
            ),
            # The list sorted by total (either way: the index is read backwards for -total).
            models.Index(fields=["total_amount", "id"], name="order_total_idx"),
        ]
        permissions = [
            ("hold_order", "Can put an order on hold and release it"),
            ("cancel_order", "Can cancel an order"),
        ]

    @property
    def total(self) -> Money:
        return Money(self.total_amount, self.currency)

    @transition(
        field=state,
        source=OrderState.RECEIVED,
        target=OrderState.VALIDATED,
        conditions=[_order_has_lines, _order_has_account],
    )
    def validate(self) -> None:
        self._entered_state()

    @transition(field=state, source=OrderState.VALIDATED, target=OrderState.SUBMITTED_TO_ERP)
    def submit_to_erp(self) -> None:
        self._entered_state()

    @transition(field=state, source=OrderState.SUBMITTED_TO_ERP, target=OrderState.ACCEPTED)
    def accept(self, *, accepted_at: dt.datetime) -> None:
        self.accepted_at = accepted_at
        self._entered_state()

    @transition(field=state, source=OrderState.ACCEPTED, target=OrderState.PROVISIONING)
    def start_provisioning(self) -> None:
        self._entered_state()

    @transition(field=state, source=OrderState.PROVISIONING, target=OrderState.ACTIVE)
    def activate(self, *, activated_at: dt.datetime) -> None:
        self.activated_at = activated_at
        self._entered_state()

    @transition(field=state, source=OrderState.ACTIVE, target=OrderState.FULFILLED)
    def fulfil(self) -> None:
        self._entered_state()

    @transition(
        field=state, source=ORDER_PRE_ACTIVE, target=OrderState.ON_HOLD, permission="q2c.hold_order"
    )
    def hold(self, *, reason_text: str, keep_clock: bool = False) -> None:
        """``keep_clock``: a retry of the same failure failed again; the time in state keeps
        counting from the first hold, so an order retried over and over still shows stuck."""
        self.held_from_state = self.state
        self.hold_reason = reason_text
        if not keep_clock:
            self._entered_state()

    @transition(
        field=state,
        source=OrderState.ON_HOLD,
        target=RETURN_VALUE(*ORDER_PRE_ACTIVE),
        permission="q2c.hold_order",
    )
    def release(self, *, keep_clock: bool = False) -> str:
        """``keep_clock``: released only to retry the step that held it; the time in state
        keeps counting from the hold (a retry is not progress)."""
        previous = self.held_from_state
        self.held_from_state = ""
        self.hold_reason = ""
        if not keep_clock:
            self._entered_state()
        return previous

    @transition(
        field=state,
        source=[OrderState.RECEIVED, OrderState.VALIDATED, OrderState.SUBMITTED_TO_ERP],
        target=OrderState.REJECTED,
    )
    def reject(self, *, reason_text: str) -> None:
        self.rejection_reason = reason_text
        self._entered_state()

    @transition(
        field=state,
        source=[*ORDER_PRE_ACTIVE, OrderState.ON_HOLD],
        target=OrderState.CANCELLED,
        permission="q2c.cancel_order",
    )
    def cancel(self, *, reason_text: str) -> None:
        self.cancellation_reason = reason_text
        self.held_from_state = ""
        self._entered_state()


class OrderLine(CommercialLine):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")

    history = AuditedHistory()

    class Meta(CommercialLine.Meta):
        constraints = [
            *_line_checks("orderline"),
            models.UniqueConstraint(fields=["order", "line_no"], name="orderline_unique_no"),
        ]


# --- Contract -----------------------------------------------------------------------------


class ContractState(models.TextChoices):
    PENDING_ACTIVATION = "pending_activation", "Pending activation"
    ACTIVE = "active", "Active"
    RENEWED = "renewed", "Renewal pending"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class Contract(ConcurrentTransitions, StatefulRecord):
    """A subscription contract; every amendment, renewal and cancellation is a new version."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="contracts")
    legal_entity = models.ForeignKey(
        LegalEntity, on_delete=models.PROTECT, related_name="contracts"
    )
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="contracts", null=True, blank=True
    )
    currency = CurrencyField()
    start_date = models.DateField()
    end_date = models.DateField()
    state = FSMField(
        default=ContractState.PENDING_ACTIVATION, choices=ContractState.choices, protected=True
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.TextField(blank=True)
    # Renewal terms: an auto-renewing contract starts a new term of ``renewal_term_months``
    # at its end, its prices raised by ``renewal_uplift_percent``; one that does not auto-renew
    # expires at term end unless a quoted renewal arrives.
    auto_renew = models.BooleanField(default=False)
    renewal_uplift_percent = models.DecimalField(
        max_digits=7, decimal_places=4, default=Decimal("0")
    )
    renewal_term_months = models.PositiveSmallIntegerField(default=12)

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            currency_check("currency", "contract_currency_iso"),
            models.CheckConstraint(
                condition=Q(end_date__gte=F("start_date")), name="contract_term_ordered"
            ),
            models.CheckConstraint(
                condition=Q(renewal_uplift_percent__gte=0) & Q(renewal_uplift_percent__lte=100),
                name="contract_uplift_in_range",
            ),
            models.CheckConstraint(
                condition=Q(renewal_term_months__gte=1), name="contract_renewal_term_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "state_changed_at"]),
            models.Index(fields=["legal_entity", "state"]),
            models.Index(fields=["account", "state"]),
            models.Index(fields=["state", "end_date"]),
            models.Index(fields=["state", "-created_at", "-id"], name="contract_state_created_idx"),
            # The list sorted by end date, soonest first.
            models.Index(fields=["end_date", "id"], name="contract_end_idx"),
        ]
        permissions = [
            ("cancel_contract", "Can cancel a contract"),
            ("amend_contract", "Can renew a contract or change its quantities"),
        ]

    @transition(field=state, source=ContractState.PENDING_ACTIVATION, target=ContractState.ACTIVE)
    def activate(self, *, activated_at: dt.datetime) -> None:
        self.activated_at = activated_at
        self._entered_state()

    @transition(field=state, source=ContractState.ACTIVE, target=ContractState.RENEWED)
    def renew(self, *, new_end_date: dt.date) -> None:
        self.end_date = new_end_date
        self._entered_state()

    @transition(field=state, source=ContractState.RENEWED, target=ContractState.ACTIVE)
    def start_renewal_term(self) -> None:
        self._entered_state()

    @transition(field=state, source=ContractState.ACTIVE, target=ContractState.EXPIRED)
    def expire(self) -> None:
        self._entered_state()

    @transition(
        field=state,
        source=[ContractState.PENDING_ACTIVATION, ContractState.ACTIVE, ContractState.RENEWED],
        target=ContractState.CANCELLED,
        permission="q2c.cancel_contract",
    )
    def cancel(self, *, reason_text: str) -> None:
        self.cancellation_reason = reason_text
        self._entered_state()


class VersionKind(models.TextChoices):
    INITIAL = "initial", "Initial"
    AMENDMENT = "amendment", "Amendment"
    RENEWAL = "renewal", "Renewal"
    CANCELLATION = "cancellation", "Cancellation"


class VersionState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Superseded"
    PARKED = "parked", "Parked (stale)"


class VersionCause(models.TextChoices):
    ORDER = "order", "Order"
    EVENT = "event", "Event"
    OPERATOR = "operator", "Operator"
    SCHEDULE = "schedule", "Schedule"


class ContractVersion(ConcurrentTransitions, models.Model):
    """One state of a contract. A change names the version it amends (``base_version``): it
    waits while that version is not active yet and is parked, never applied, when another
    change got there first. ``changes`` says what changed against the base, ``change_key``
    makes the same change (redelivered, replayed) one version."""

    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=VersionKind.choices)
    effective_date = models.DateField()
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="contract_versions"
    )
    state = FSMField(default=VersionState.PENDING, choices=VersionState.choices, protected=True)
    created_at = models.DateTimeField(auto_now_add=True)
    base_version = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="changes_on"
    )
    cause = models.CharField(max_length=20, choices=VersionCause.choices, blank=True)
    cause_ref = models.CharField(max_length=255, blank=True)
    change_key = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True)
    term_end = models.DateField(null=True, blank=True)
    parked_reason = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["contract", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["contract", "number"], name="contractversion_unique_no"
            ),
            models.UniqueConstraint(
                fields=["contract"],
                condition=Q(state=VersionState.ACTIVE),
                name="contractversion_one_active",
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="contractversion_number_pos"),
            models.UniqueConstraint(
                fields=["contract", "change_key"],
                condition=~Q(change_key=""),
                name="contractversion_unique_change",
            ),
        ]
        indexes = [models.Index(fields=["state", "effective_date"], name="contractversion_due_idx")]

    def __str__(self) -> str:
        return f"{self.contract_id} v{self.number} ({self.kind})"

    @transition(field=state, source=VersionState.PENDING, target=VersionState.ACTIVE)
    def activate(self) -> None:
        pass

    @transition(field=state, source=VersionState.ACTIVE, target=VersionState.SUPERSEDED)
    def supersede(self) -> None:
        pass

    @transition(field=state, source=VersionState.PENDING, target=VersionState.PARKED)
    def park(self, *, reason_text: str = "") -> None:
        self.parked_reason = reason_text


class ChangeRequestState(models.TextChoices):
    REQUESTED = "requested", "Awaiting approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ContractChangeRequest(ConcurrentTransitions, models.Model):
    """A change of a contract that gives money back (a cancellation now with credit, a
    decrease), asked for by one person and approved by another before anything is sent
    (maker-checker). ``preview`` is the dry run the requester saw."""

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="change_requests")
    action = models.CharField(max_length=30)
    payload = models.JSONField(default=dict, blank=True)
    preview = models.JSONField(default=dict, blank=True)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="contract_changes_requested",
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="contract_changes_decided",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    state = FSMField(
        default=ChangeRequestState.REQUESTED, choices=ChangeRequestState.choices, protected=True
    )
    version = models.ForeignKey(
        ContractVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    history = AuditedHistory()

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="contractchangerequest_four_eyes",
            ),
        ]
        permissions = [("approve_contract_change", "Can approve a contract change with credit")]

    def __str__(self) -> str:
        return f"CCR-{self.pk} {self.action} {self.contract_id}"

    @transition(
        field=state, source=ChangeRequestState.REQUESTED, target=ChangeRequestState.APPROVED
    )
    def approve(self, *, by: Any = None, at: dt.datetime | None = None, note: str = "") -> None:
        self.decided_by, self.decided_at, self.decision_note = by, at, note

    @transition(
        field=state, source=ChangeRequestState.REQUESTED, target=ChangeRequestState.REJECTED
    )
    def reject(self, *, by: Any = None, at: dt.datetime | None = None, note: str = "") -> None:
        self.decided_by, self.decided_at, self.decision_note = by, at, note


class ContractLine(CommercialLine):
    version = models.ForeignKey(ContractVersion, on_delete=models.CASCADE, related_name="lines")

    history = AuditedHistory()

    class Meta(CommercialLine.Meta):
        constraints = [
            *_line_checks("contractline"),
            models.UniqueConstraint(fields=["version", "line_no"], name="contractline_unique_no"),
        ]


# --- Invoice, credit note, payment --------------------------------------------------------


class InvoiceState(models.TextChoices):
    DRAFT = "draft", "Draft"
    POSTED = "posted", "Posted"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


def _invoice_has_lines(invoice: Any) -> bool:
    """needs at least one line"""
    return invoice.pk is not None and invoice.lines.exists()


class Invoice(ConcurrentTransitions, StatefulRecord):
    number = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="The billing system's invoice number"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    legal_entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="invoices")
    contract = models.ForeignKey(
        Contract, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    # The contract version in force on the issue date (mirrored invoices; empty otherwise).
    contract_version = models.ForeignKey(
        ContractVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    currency = CurrencyField()
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    total_amount = AmountField()
    tax_amount = AmountField()
    amount_paid = AmountField()
    state = FSMField(default=InvoiceState.DRAFT, choices=InvoiceState.choices, protected=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            currency_check("currency", "invoice_currency_iso"),
            models.CheckConstraint(condition=Q(total_amount__gte=0), name="invoice_total_non_neg"),
            models.CheckConstraint(condition=Q(amount_paid__gte=0), name="invoice_paid_non_neg"),
            models.CheckConstraint(
                condition=Q(amount_paid__lte=F("total_amount")), name="invoice_not_overpaid"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "state_changed_at"]),
            models.Index(fields=["legal_entity", "state"]),
            models.Index(fields=["account", "state"]),
            models.Index(fields=["state", "-created_at"], name="invoice_state_created_idx"),
            # The dashboard's invoice exception rate over the last 30 days of invoices.
            models.Index(
                fields=["created_at"], include=["order"], name="invoice_created_order_idx"
            ),
        ]
        permissions = [("void_invoice", "Can void an invoice")]

    @property
    def total(self) -> Money:
        return Money(self.total_amount, self.currency)

    @property
    def balance(self) -> Money:
        return Money(self.total_amount - self.amount_paid, self.currency)

    @transition(
        field=state,
        source=InvoiceState.DRAFT,
        target=InvoiceState.POSTED,
        conditions=[_invoice_has_lines],
    )
    def post(self, *, posted_at: dt.datetime) -> None:
        self.posted_at = posted_at
        self._entered_state()

    @transition(
        field=state,
        source=[InvoiceState.POSTED, InvoiceState.PARTIALLY_PAID],
        target=RETURN_VALUE(InvoiceState.PARTIALLY_PAID, InvoiceState.PAID),
    )
    def apply_payment(self, *, amount: Decimal) -> str:
        if amount <= 0:
            raise ValueError("a payment applies a positive amount")
        if self.amount_paid + amount > self.total_amount:
            raise ValueError(
                f"payment of {amount} exceeds the open balance "
                f"{self.total_amount - self.amount_paid}"
            )
        self.amount_paid += amount
        self._entered_state()
        if self.amount_paid == self.total_amount:
            return InvoiceState.PAID
        return InvoiceState.PARTIALLY_PAID

    @transition(
        field=state,
        source=[InvoiceState.DRAFT, InvoiceState.POSTED],
        target=InvoiceState.VOID,
        permission="q2c.void_invoice",
    )
    def void(self, *, reason_text: str) -> None:
        self.void_reason = reason_text
        self._entered_state()


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    line_no = models.PositiveIntegerField()
    product = models.ForeignKey(Product, on_delete=models.PROTECT, null=True, blank=True)
    description = models.CharField(max_length=255)
    quantity = models.DecimalField(max_digits=18, decimal_places=4)
    unit_price = AmountField()
    amount = AmountField()
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["line_no"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "line_no"], name="invoiceline_unique_no"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="invoiceline_qty_non_neg"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id} line {self.line_no}"


class CreditNoteState(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    VOID = "void", "Void"


class CreditNote(ConcurrentTransitions, StatefulRecord):
    # None for a credit that refers to the contract rather than one invoice (the unused
    # period of a cancelled or reduced contract).
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, related_name="credit_notes", null=True, blank=True
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credit_notes")
    currency = CurrencyField()
    amount = AmountField()
    reason = models.TextField()
    number = models.CharField(
        max_length=64, blank=True, help_text="The billing system's credit note number"
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    state = FSMField(default=CreditNoteState.DRAFT, choices=CreditNoteState.choices, protected=True)
    contract = models.ForeignKey(
        Contract, on_delete=models.PROTECT, related_name="credit_notes", null=True, blank=True
    )
    contract_version = models.OneToOneField(
        ContractVersion,
        on_delete=models.PROTECT,
        related_name="credit_note",
        null=True,
        blank=True,
    )

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            currency_check("currency", "creditnote_currency_iso"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="creditnote_amount_positive"),
        ]

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    @transition(field=state, source=CreditNoteState.DRAFT, target=CreditNoteState.ISSUED)
    def issue(self, *, issued_at: dt.datetime | None = None) -> None:
        self.issued_at = issued_at
        self._entered_state()

    @transition(field=state, source=CreditNoteState.DRAFT, target=CreditNoteState.VOID)
    def void(self) -> None:
        self._entered_state()


class PaymentState(models.TextChoices):
    RECEIVED = "received", "Received"
    APPLIED = "applied", "Applied to an invoice"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class Payment(ConcurrentTransitions, StatefulRecord):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payments")
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="payments"
    )
    currency = CurrencyField()
    amount = AmountField()
    received_at = models.DateTimeField()
    method = models.CharField(max_length=40, blank=True)
    state = FSMField(default=PaymentState.RECEIVED, choices=PaymentState.choices, protected=True)
    failure_reason = models.TextField(blank=True)
    amount_refunded = AmountField(help_text="what was given back (refunded when all of it)")

    history = AuditedHistory()

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            currency_check("currency", "payment_currency_iso"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount")),
                name="payment_refund_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["state", "state_changed_at"])]

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    @transition(field=state, source=PaymentState.RECEIVED, target=PaymentState.APPLIED)
    def apply(self, *, invoice: Invoice) -> None:
        self.invoice = invoice
        self._entered_state()

    @transition(field=state, source=PaymentState.RECEIVED, target=PaymentState.FAILED)
    def fail(self, *, reason_text: str) -> None:
        self.failure_reason = reason_text
        self._entered_state()

    @transition(
        field=state,
        source=PaymentState.APPLIED,
        target=RETURN_VALUE(PaymentState.APPLIED, PaymentState.REFUNDED),
    )
    def refund(self, *, amount: Decimal | None = None) -> str:
        """Give back ``amount`` (all that is left when None); refunded once nothing is left."""
        left = self.amount - self.amount_refunded
        amount = left if amount is None else amount
        if amount <= 0:
            raise ValueError("a refund gives back a positive amount")
        if amount > left:
            raise ValueError(f"refund of {amount} exceeds the {left} not yet refunded")
        self.amount_refunded += amount
        self._entered_state()
        if self.amount_refunded == self.amount:
            return PaymentState.REFUNDED
        return PaymentState.APPLIED


class Refund(CanonicalRecord):
    """Money given back to a customer on a payment (billing's refund, mirrored). A fact with
    no lifecycle of its own: the payment's state and ``amount_refunded`` carry it."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="refunds"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="refunds")
    currency = CurrencyField()
    amount = AmountField()
    refunded_at = models.DateTimeField()
    reason = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-refunded_at"]
        constraints = [
            currency_check("currency", "refund_currency_iso"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class UsageState(models.TextChoices):
    RECEIVED = "received", "Received"
    RATED = "rated", "Rated"
    BILLED = "billed", "Billed"
    REJECTED = "rejected", "Rejected"


class UsageRecord(ConcurrentTransitions, StatefulRecord):
    """One usage measurement as a sender reported it, deduplicated by the sender's id."""

    # Rated when it comes in: ``contract_version`` is the version in force on the usage date,
    # ``unit_price`` that version's net price of the product, ``amount`` quantity x unit price.
    # A correction names the record it replaces (``corrects``); the replaced one is marked
    # ``superseded`` and only records that are not count towards their period's report.

    # Not indexed here (unlike other records): no list sorts usage by them, and every index is
    # paid by each of thousands of records per request.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    state_changed_at = models.DateTimeField(default=timezone.now)
    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="usage_records")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="usage_records")
    quantity = models.DecimalField(max_digits=18, decimal_places=4)
    occurred_at = models.DateTimeField()
    source_system = models.CharField(max_length=20)
    source_event_id = models.CharField(max_length=128)
    state = FSMField(default=UsageState.RECEIVED, choices=UsageState.choices, protected=True)
    rejection_reason = models.TextField(blank=True)
    # Not indexed (nor ``corrects``): every index costs each of thousands of records per
    # request, and the period reports keep the sums these would be read for.
    contract_version = models.ForeignKey(
        ContractVersion, on_delete=models.PROTECT, null=True, blank=True, db_index=False,
        related_name="usage_records", help_text="the version in force on the usage date",
    )  # fmt: skip
    period_start = models.DateField(
        null=True, blank=True, help_text="first day of the calendar month the usage falls in"
    )
    currency = CurrencyField(blank=True, default="")
    unit_price = AmountField()
    amount = AmountField(help_text="quantity x the version's net unit price")
    corrects = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="corrections",
        db_index=False, help_text="the earlier record this one replaces",
    )  # fmt: skip
    superseded = models.BooleanField(default=False, help_text="replaced by a correction")

    # The history keeps the audit browser's indexes (newest first, by actor, by record id,
    # by enterprise id) and none of the copied columns' own.
    history = AuditedHistory(
        no_db_index=[
            "id", "created_at", "state_changed_at", "contract", "product", "contract_version",
            "corrects",
        ]
    )  # fmt: skip

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_quantity_non_neg"),
            models.UniqueConstraint(
                fields=["source_system", "source_event_id"], name="usage_unique_source_event"
            ),
        ]
        indexes = [
            # Only corrections are indexed by what they correct (the others pay nothing).
            models.Index(
                fields=["corrects"], condition=Q(corrects__isnull=False), name="usage_corrects_idx"
            ),
        ]
        permissions = [("report_usage", "Can send usage records (the bulk usage API)")]

    @property
    def rated(self) -> Money:
        return Money(self.amount, self.currency)

    @transition(field=state, source=UsageState.RECEIVED, target=UsageState.RATED)
    def rate(self) -> None:
        self._entered_state()

    @transition(field=state, source=UsageState.RATED, target=UsageState.BILLED)
    def bill(self) -> None:
        self._entered_state()

    @transition(field=state, source=UsageState.RECEIVED, target=UsageState.REJECTED)
    def reject(self, *, reason_text: str) -> None:
        self.rejection_reason = reason_text
        self._entered_state()


class UsageReportState(models.TextChoices):
    OPEN = "open", "Period open"
    PENDING = "pending", "To report"
    REPORTED = "reported", "Reported"
    FAILED = "failed", "Report failed"


class UsageReport(models.Model):
    """The usage of one product under one contract version in one calendar month, as rated in
    Tandem (``quantity``, ``amount``) and as billing has received it (``reported_*``).

    Billing receives the difference between the two as a ``UsageDelivery`` with its own key,
    so a correction of a reported period reaches billing as a delta, once.
    """

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="usage_reports")
    contract_version = models.ForeignKey(
        ContractVersion, on_delete=models.PROTECT, related_name="usage_reports"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="usage_reports")
    period_start = models.DateField()
    period_end = models.DateField(help_text="last day of the period")
    currency = CurrencyField()
    unit_price = AmountField()
    quantity = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    amount = AmountField()
    reported_quantity = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    reported_amount = AmountField()
    state = models.CharField(
        max_length=10, choices=UsageReportState.choices, default=UsageReportState.OPEN
    )
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["contract", "-period_start", "product"]
        constraints = [
            currency_check("currency", "usagereport_currency_iso"),
            models.UniqueConstraint(
                fields=["contract_version", "product", "period_start"],
                name="usagereport_unique_period",
            ),
        ]
        indexes = [models.Index(fields=["state", "period_end"], name="usagereport_due_idx")]

    def __str__(self) -> str:
        return f"usage {self.product_id} {self.period_start:%Y-%m} v{self.contract_version_id}"

    @property
    def key(self) -> str:
        """What billing's usage reports of this period are keyed by."""
        return f"usage-{self.pk}"

    @property
    def rated(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def reported(self) -> Money:
        return Money(self.reported_amount, self.currency)


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class UsageDelivery(models.Model):
    """One report of a usage period to billing: the delta between the period's rated usage
    and what billing had, under a key stored before the call, so a retry after a lost
    answer sends the same key and billing keeps one report."""

    report = models.ForeignKey(UsageReport, on_delete=models.PROTECT, related_name="deliveries")
    sequence = models.PositiveIntegerField()
    key = models.CharField(max_length=100, unique=True)
    quantity = models.DecimalField(max_digits=18, decimal_places=4)
    amount = models.DecimalField(max_digits=18, decimal_places=4)
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    external_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["report", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["report", "sequence"], name="usagedelivery_unique_seq"),
            models.UniqueConstraint(
                fields=["report"],
                condition=Q(state=DeliveryState.PENDING),
                name="usagedelivery_one_pending",
            ),
        ]

    def __str__(self) -> str:
        return self.key
