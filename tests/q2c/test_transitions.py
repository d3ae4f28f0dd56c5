"""Every state machine of the commercial records, driven by one table per model.

``MACHINES`` says, per model, how to make a record, how each transition runs (through its
service, or the bare transition where no service exists yet) and what else a refusal must
leave as it was. The allowed (transition, source, target) and refused (transition, state)
cases are read from the django-fsm metadata, so a new state or transition is covered without
editing a list. The permission and condition tables below name each guarded transition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import ConditionFailed, TransitionRefused
from core.identifiers import PREFIXES, identifier_allocate
from core.money import Money
from core.transitions import transition_apply
from q2c import lifecycle, services
from q2c.models import (
    Contract,
    ContractVersion,
    CreditNote,
    Invoice,
    InvoiceState,
    Order,
    OrderState,
    Payment,
    PaymentState,
    Quote,
    UsageRecord,
)
from tests import factories
from tests.q2c.helpers import (
    ORDER_COMPUTED,
    ORDER_STEPS,
    Step,
    case_ids,
    credit_note,
    fsm_allowed_cases,
    fsm_field,
    fsm_refused_cases,
    fsm_sources,
    fsm_states,
    fsm_transitions,
    last_history,
    order_in,
    quote,
    usage_record,
    walk_to,
)

# --- How each transition runs -----------------------------------------------------------------


def _bare(name: str, *, keeps_reason: bool = False) -> Step:
    """The bare transition, for records no service moves yet; the record keeps the reason
    (``reason_text``) when ``keeps_reason``."""

    def step(record: Any, *, target: str | None, actor: Actor, reason: str) -> Any:
        kwargs = {"reason_text": reason} if keeps_reason else {}
        return transition_apply(record, name, actor=actor, reason=reason, **kwargs)

    return step


def _quote_convert(record: Quote, *, target: str | None, actor: Actor, reason: str) -> Quote:
    services.quote_convert_to_order(quote=record, actor=actor, reason=reason)
    return record


QUOTE_STEPS: dict[str, Step] = {
    "convert": _quote_convert,
    # CPQ rejections arrive with the inbound events; until then the bare transition.
    "reject": _bare("reject", keeps_reason=True),
}


def _contract_renew(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Any:
    services.contract_renew(
        contract=contract,
        new_end_date=contract.end_date.replace(year=contract.end_date.year + 1),
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )
    return contract


def _contract_cancel(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Any:
    return services.contract_cancel(
        contract=contract, effective_date=dt.date(2026, 6, 30), actor=actor, reason=reason
    )


def _contract_activate(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Any:
    return services.contract_activate(contract=contract, actor=actor, reason=reason)


def _contract_start_renewal_term(
    contract: Contract, *, target: str | None, actor: Actor, reason: str
) -> Any:
    return services.contract_start_renewal_term(contract=contract, actor=actor, reason=reason)


CONTRACT_STEPS: dict[str, Step] = {
    "activate": _contract_activate,
    "renew": _contract_renew,
    "start_renewal_term": _contract_start_renewal_term,
    # Expiry runs in bulk for every ended contract (contracts_expire_ended, tested in
    # test_contract_versions.py); one contract's expiry is the bare transition.
    "expire": _bare("expire"),
    "cancel": _contract_cancel,
}


# Versions move through the contract services: activating the contract activates version 1,
# an amendment supersedes it. The version's own transitions are then run bare.
def _version_activated(
    version: ContractVersion, *, target: str | None, actor: Actor, reason: str
) -> ContractVersion:
    services.contract_activate(contract=version.contract, actor=actor, reason=reason)
    version.refresh_from_db()
    return version


def _version_superseded(
    version: ContractVersion, *, target: str | None, actor: Actor, reason: str
) -> ContractVersion:
    services.contract_amend(
        contract=version.contract,
        effective_date=dt.date(2026, 7, 1),
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )
    version.refresh_from_db()
    return version


def _version_parked(
    version: ContractVersion, *, target: str | None, actor: Actor, reason: str
) -> ContractVersion:
    return lifecycle.contract_version_park(version=version, actor=actor, reason=reason)


VERSION_WALK: dict[str, Step] = {
    "activate": _version_activated,
    "supersede": _version_superseded,
    "park": _version_parked,
}

# A payment leaves the invoice partially paid or paid, by its amount.
INVOICE_COMPUTED = {"apply_payment": [InvoiceState.PARTIALLY_PAID, InvoiceState.PAID]}


def _invoice_apply_payment(
    invoice: Invoice, *, target: str | None, actor: Actor, reason: str
) -> Invoice:
    """Pay the whole open balance to reach ``paid``, else a part of it (10.00)."""
    amount = Decimal("10.00")
    if target == InvoiceState.PAID:
        amount = invoice.total_amount - invoice.amount_paid
    payment = services.payment_record(
        account=invoice.account,
        amount=Money(amount, invoice.currency),
        received_at=timezone.now(),
        actor=actor,
        reason=reason,
    )
    return services.payment_apply(payment=payment, invoice=invoice, actor=actor, reason=reason)


def _invoice_post(invoice: Invoice, *, target: str | None, actor: Actor, reason: str) -> Any:
    return services.invoice_post(invoice=invoice, actor=actor, reason=reason)


def _invoice_void(invoice: Invoice, *, target: str | None, actor: Actor, reason: str) -> Any:
    return services.invoice_void(invoice=invoice, actor=actor, reason=reason)


INVOICE_STEPS: dict[str, Step] = {
    "post": _invoice_post,
    "void": _invoice_void,
    "apply_payment": _invoice_apply_payment,
}


def _payment_apply(payment: Payment, *, target: str | None, actor: Actor, reason: str) -> Any:
    invoice = factories.invoice(account=payment.account)
    services.invoice_post(invoice=invoice, actor=actor, reason="ready to be paid")
    services.payment_apply(payment=payment, invoice=invoice, actor=actor, reason=reason)
    return payment


def _payment_refund(payment: Payment, *, target: str | None, actor: Actor, reason: str) -> Any:
    """Refund all of it to reach ``refunded``, else a part of it (10.00)."""
    amount = payment.amount if target == PaymentState.REFUNDED else Decimal("10.00")
    services.payment_refund(
        payment=payment, amount=Money(amount, payment.currency), refunded_at=timezone.now(),
        actor=actor, reason=reason,
    )  # fmt: skip
    return Payment.objects.get(pk=payment.pk)


PAYMENT_STEPS: dict[str, Step] = {
    "apply": _payment_apply,
    "fail": _bare("fail", keeps_reason=True),
    "refund": _payment_refund,
}
PAYMENT_COMPUTED = {"refund": [PaymentState.APPLIED, PaymentState.REFUNDED]}


def _payment() -> Payment:
    return services.payment_record(
        account=factories.account(),
        amount=Money(Decimal("40.00"), "GBP"),
        received_at=timezone.now(),
        actor=factories.actor(),
        reason="test setup",
    )


# No credit-note or usage service exists yet: the bare transitions are what one will call.
CREDIT_NOTE_STEPS: dict[str, Step] = {name: _bare(name) for name in fsm_transitions(CreditNote)}
USAGE_STEPS: dict[str, Step] = {
    "rate": _bare("rate"),
    "bill": _bare("bill"),
    "reject": _bare("reject", keeps_reason=True),
}


# --- The table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """How the tests drive one model's state machine."""

    model: type[models.Model]
    new: Callable[[], Any]  # a new record in its first state
    steps: Mapping[str, Step]  # how each transition is walked (and run, unless ``run``)
    computed: Mapping[str, Sequence[str]] = field(default_factory=dict)
    run: Mapping[str, Step] | None = None  # how the transition under test runs
    name_of: Callable[[Any], str] = lambda record: record.enterprise_id
    # What else a refused transition must leave as it was, besides the state and history.
    kept: Callable[[Any], Any] = lambda record: None

    def record_in(self, state: str) -> Any:
        return walk_to(self.new(), state, steps=self.steps, computed=self.computed)

    def step(self, name: str) -> Step:
        return (self.run or self.steps)[name]


MACHINES: dict[str, Machine] = {
    "quote": Machine(Quote, quote, QUOTE_STEPS, kept=lambda q: Order.objects.count()),
    "order": Machine(Order, factories.order, ORDER_STEPS, ORDER_COMPUTED),
    "contract": Machine(
        Contract,
        factories.contract,
        CONTRACT_STEPS,
        kept=lambda c: list(c.versions.values_list("number", "kind", "state")),
    ),
    "contract_version": Machine(
        ContractVersion,
        lambda: factories.contract().versions.get(number=1),
        VERSION_WALK,
        run={name: _bare(name) for name in fsm_transitions(ContractVersion)},
        name_of=str,
    ),
    "invoice": Machine(
        Invoice,
        factories.invoice,
        INVOICE_STEPS,
        INVOICE_COMPUTED,
        kept=lambda i: i.amount_paid,
    ),
    "credit_note": Machine(CreditNote, credit_note, CREDIT_NOTE_STEPS),
    "payment": Machine(
        Payment,
        _payment,
        PAYMENT_STEPS,
        PAYMENT_COMPUTED,
        kept=lambda p: (p.invoice_id, p.amount_refunded),
    ),
    "usage": Machine(UsageRecord, usage_record, USAGE_STEPS),
}


def _cases(
    per_machine: Callable[[Machine], Sequence[Sequence[str]]],
) -> tuple[list[tuple[str, ...]], list[str]]:
    cases = [(key, *case) for key, machine in MACHINES.items() for case in per_machine(machine)]
    return cases, case_ids(cases)


ALLOWED, ALLOWED_IDS = _cases(lambda m: fsm_allowed_cases(m.model, computed=m.computed))
REFUSED, REFUSED_IDS = _cases(lambda m: fsm_refused_cases(m.model))
STATES, STATES_IDS = _cases(lambda m: [(state,) for state in fsm_states(m.model)])


def fsm_permissions(model: type[models.Model]) -> list[tuple[str, str]]:
    """``(transition, permission)`` of every transition a person needs a permission for."""
    return sorted(
        (name, method._django_fsm.transitions[fsm_sources(model, name)[0]].permission)
        for name, method in fsm_field(model).transitions[model].items()
        if method._django_fsm.transitions[fsm_sources(model, name)[0]].permission
    )


PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "quote": [],
    "order": [
        ("cancel", "q2c.cancel_order"),
        ("hold", "q2c.hold_order"),
        ("release", "q2c.hold_order"),
    ],
    "contract": [("cancel", "q2c.cancel_contract")],
    "contract_version": [],
    "invoice": [("void", "q2c.void_invoice")],
    "credit_note": [],
    "payment": [],
    "usage": [],
}
# Each permissioned transition from one of its sources, and where it leads (release: back to
# received, where the walk to on_hold held the order from).
PERMISSIONED_RUNS = [
    ("order", "cancel", "accepted", "cancelled"),
    ("order", "hold", "accepted", "on_hold"),
    ("order", "release", "on_hold", "received"),
    ("contract", "cancel", "active", "cancelled"),
    ("invoice", "void", "posted", "void"),
]


@dataclass(frozen=True)
class Denied:
    """A person whose roles lack the transition's permission, and what must stay as it was."""

    machine: str
    transition: str
    source: str
    username: str
    role: str | None
    reason: str
    kept: Callable[[Any], tuple[Any, ...]]
    kept_as: tuple[Any, ...]


DENIED = [
    Denied("order", "cancel", "accepted", "pat", None, "tried without the right",
           lambda o: (o.state,), ("accepted",)),
    Denied("order", "hold", "accepted", "pat", None, "tried without the right",
           lambda o: (o.state,), ("accepted",)),
    Denied("order", "release", "on_hold", "pat", None, "tried without the right",
           lambda o: (o.state,), ("on_hold",)),
    Denied("order", "hold", "received", "pat", "finance_ops", "pause it",
           lambda o: (o.state, o.held_from_state), (OrderState.RECEIVED, "")),
    Denied("contract", "cancel", "active", "sam", "sales_ops", "customer left",
           lambda c: (c.state, c.versions.count()), ("active", 1)),
    Denied("invoice", "void", "posted", "sam", "sales_ops", "wrong customer",
           lambda i: (i.state, i.void_reason), (InvoiceState.POSTED, "")),
]  # fmt: skip


@dataclass(frozen=True)
class Granted:
    """A role whose permission lets a person run the transition, and what it then shows."""

    machine: str
    transition: str
    source: str
    target: str
    username: str
    role: str
    reason: str
    shows: Callable[[Any], tuple[Any, ...]] = lambda record: ()
    shows_as: tuple[Any, ...] = ()


GRANTED = [
    Granted("order", "cancel", "accepted", "cancelled", "sam", "sales_ops",
            "as the customer asked"),
    Granted("order", "hold", "accepted", "on_hold", "sam", "sales_ops", "as the customer asked"),
    Granted("order", "release", "on_hold", "received", "sam", "sales_ops",
            "as the customer asked"),
    Granted("contract", "cancel", "active", "cancelled", "fran", "finance_ops", "customer left",
            lambda c: (c.state, c.cancellation_reason), ("cancelled", "customer left")),
    Granted("invoice", "void", "posted", "void", "fran", "finance_ops", "wrong customer",
            lambda i: (i.state, i.void_reason), (InvoiceState.VOID, "wrong customer")),
]  # fmt: skip


def _order_without_lines() -> Order:
    account = factories.account()
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        return Order.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["order"]),
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
        )


def _invoice_without_lines() -> Invoice:
    account = factories.account()
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        return Invoice.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["invoice"]),
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
        )


@dataclass(frozen=True)
class Unmet:
    """A transition allowed from the record's state whose condition the record fails."""

    machine: str
    transition: str
    new: Callable[[], Any]
    reason: str
    unmet: list[str]
    kept: Callable[[Any], tuple[Any, ...]]
    kept_as: tuple[Any, ...]


CONDITIONS = [
    Unmet("order", "validate", _order_without_lines, "looks complete",
          ["needs at least one line"], lambda o: (o.state,), (OrderState.RECEIVED,)),
    Unmet("invoice", "post", _invoice_without_lines, "month end", ["needs at least one line"],
          lambda i: (i.state, i.posted_at), (InvoiceState.DRAFT, None)),
]  # fmt: skip


# --- Every machine -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(MACHINES))
def test_every_transition_has_a_step(key):
    # given
    machine = MACHINES[key]
    allowed = fsm_allowed_cases(machine.model, computed=machine.computed)
    refused = fsm_refused_cases(machine.model)
    # when
    names = sorted({name for name, _, _ in allowed} | {name for name, _ in refused})
    # then
    assert names == sorted(machine.steps) == sorted(fsm_transitions(machine.model))


@pytest.mark.django_db
@pytest.mark.parametrize(("key", "state"), STATES, ids=STATES_IDS)
def test_every_state_is_reached_through_the_services(key, state):
    # given
    machine = MACHINES[key]
    record = machine.new()
    # when
    record = walk_to(record, state, steps=machine.steps, computed=machine.computed)
    # then
    record.refresh_from_db()
    assert record.state == state


@pytest.mark.django_db
@pytest.mark.parametrize(("key", "transition", "source", "target"), ALLOWED, ids=ALLOWED_IDS)
def test_transition_is_allowed_from_each_of_its_sources(key, transition, source, target):
    # given
    machine = MACHINES[key]
    record = machine.record_in(source)
    history_before = record.history.count()
    # when
    machine.step(transition)(
        record, target=target, actor=factories.actor(), reason="checked by test"
    )
    # then
    record.refresh_from_db()
    assert record.state == target
    assert record.history.count() == history_before + 1
    assert last_history(record) == (target, "worker", "checked by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("key", "transition", "state"), REFUSED, ids=REFUSED_IDS)
def test_transition_is_refused_from_every_other_state(key, transition, state):
    # given
    machine = MACHINES[key]
    record = machine.record_in(state)
    history_before = record.history.count()
    kept_before = machine.kept(record)
    allowed = fsm_sources(machine.model, transition)
    # when
    with pytest.raises(TransitionRefused) as refused:
        machine.step(transition)(
            record, target=None, actor=factories.actor(), reason="tried by test"
        )
    # then
    assert type(refused.value) is TransitionRefused
    assert str(refused.value) == (
        f"{machine.name_of(record)} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(allowed)})"
    )
    assert (refused.value.transition, refused.value.state, refused.value.allowed) == (
        transition,
        state,
        allowed,
    )
    record.refresh_from_db()
    assert record.state == state
    assert record.history.count() == history_before
    assert machine.kept(record) == kept_before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", CONDITIONS, ids=[f"{c.machine}:{c.transition}" for c in CONDITIONS]
)
def test_transition_is_refused_while_its_condition_is_unmet(case):
    # given
    machine = MACHINES[case.machine]
    record = case.new()
    history_before = record.history.count()
    # when
    with pytest.raises(ConditionFailed) as failed:
        machine.step(case.transition)(
            record, target=None, actor=factories.actor(), reason=case.reason
        )
    # then
    assert str(failed.value) == (
        f"{record.enterprise_id} cannot '{case.transition}': {', '.join(case.unmet)}"
    )
    assert failed.value.unmet == case.unmet
    record.refresh_from_db()
    assert case.kept(record) == case.kept_as
    assert record.history.count() == history_before


# --- Permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(MACHINES))
def test_the_transitions_a_person_needs_a_permission_for(key):
    # given / when
    permissioned = fsm_permissions(MACHINES[key].model)
    # then
    assert permissioned == PERMISSIONS[key]


def test_every_permissioned_transition_is_run_below():
    # given / when
    runs = sorted((key, name) for key, name, _, _ in PERMISSIONED_RUNS)
    # then
    assert runs == sorted((key, name) for key, names in PERMISSIONS.items() for name, _ in names)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", DENIED, ids=[f"{c.machine}:{c.transition}:{c.role or 'no role'}" for c in DENIED]
)
def test_person_without_the_permission_is_denied(case, make_user):
    # given
    machine = MACHINES[case.machine]
    record = machine.record_in(case.source)
    history_before = record.history.count()
    person = Actor.person(make_user(case.username, role=case.role))
    # when
    with pytest.raises(PermissionDenied) as denied:
        machine.step(case.transition)(record, target=None, actor=person, reason=case.reason)
    # then
    assert str(denied.value) == (
        f"{case.username} may not '{case.transition}' {record.enterprise_id}"
    )
    record.refresh_from_db()
    assert case.kept(record) == case.kept_as
    assert record.history.count() == history_before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", GRANTED, ids=[f"{c.machine}:{c.transition}:{c.role}" for c in GRANTED]
)
def test_a_role_with_the_permission_may_run_it(case, make_user):
    # given
    machine = MACHINES[case.machine]
    record = machine.record_in(case.source)
    person = Actor.person(make_user(case.username, role=case.role))
    # when
    machine.step(case.transition)(record, target=None, actor=person, reason=case.reason)
    # then
    record.refresh_from_db()
    assert case.shows(record) == case.shows_as
    assert last_history(record) == (case.target, case.username, case.reason)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("key", "transition", "source", "target"),
    PERMISSIONED_RUNS,
    ids=case_ids([(key, name) for key, name, _, _ in PERMISSIONED_RUNS]),
)
@pytest.mark.parametrize("system_name", ["worker", "connector:erp"])
def test_system_actors_may_run_the_permissioned_transitions(
    key, transition, source, target, system_name
):
    # given
    machine = MACHINES[key]
    record = machine.record_in(source)
    system = Actor.system(system_name)
    # when
    machine.step(transition)(record, target=None, actor=system, reason="the ERP said so")
    # then
    record.refresh_from_db()
    assert last_history(record) == (target, system_name, "the ERP said so")


# --- What one machine does beyond its table -----------------------------------------------------


@pytest.mark.django_db
def test_refusal_message_names_the_order_the_transition_and_the_state():
    # given
    order = factories.order()
    # when
    with pytest.raises(TransitionRefused) as refused:
        services.order_fulfil(order=order, actor=factories.actor(), reason="ship it")
    # then
    assert str(refused.value) == (
        "ORD-000001 cannot 'fulfil' while 'received' (allowed from: active)"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_sources(Order, "hold"))
def test_hold_remembers_the_state_it_came_from(state):
    # given
    order = order_in(state)
    # when
    services.order_hold(order=order, actor=factories.actor(), reason="customer asked to pause")
    # then
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (
        OrderState.ON_HOLD,
        state,
        "customer asked to pause",
    )
    assert last_history(order, "state", "held_from_state") == (
        "on_hold",
        state,
        "worker",
        "customer asked to pause",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_sources(Order, "hold"))
def test_release_restores_the_state_it_was_held_from(state):
    # given
    order = order_in(state)
    services.order_hold(order=order, actor=factories.actor(), reason="customer asked to pause")
    # when
    services.order_release(order=order, actor=factories.actor(), reason="customer confirmed")
    # then
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (state, "", "")
    assert last_history(order) == (state, "worker", "customer confirmed")


def test_release_can_return_to_every_state_hold_comes_from():
    # given
    release = fsm_transitions(Order)["release"]
    # when
    targets = sorted(str(s) for s in release[OrderState.ON_HOLD].allowed_states)
    # then
    assert targets == fsm_sources(Order, "hold")


@pytest.mark.django_db
def test_cancelling_a_held_order_forgets_where_it_was_held_from():
    # given
    order = order_in(OrderState.ACCEPTED)
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    # when
    services.order_cancel(order=order, actor=factories.actor(), reason="credit refused")
    # then
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.cancellation_reason) == (
        OrderState.CANCELLED,
        "",
        "credit refused",
    )


@pytest.mark.django_db
def test_payments_add_up_to_paid():
    # given
    invoice = MACHINES["invoice"].record_in(InvoiceState.POSTED)
    actor = factories.actor()
    # when
    invoice = _invoice_apply_payment(invoice, target=None, actor=actor, reason="first instalment")
    partly = (invoice.state, invoice.amount_paid)
    invoice = _invoice_apply_payment(
        invoice, target=InvoiceState.PAID, actor=actor, reason="the rest"
    )
    # then
    assert partly == (InvoiceState.PARTIALLY_PAID, Decimal("10.0000"))
    invoice.refresh_from_db()
    assert (invoice.state, invoice.amount_paid, invoice.total_amount) == (
        InvoiceState.PAID,
        Decimal("100.0000"),
        Decimal("100.0000"),
    )
    assert list(
        invoice.history.order_by("history_id").values_list("state", "history_change_reason")
    )[-2:] == [("partially_paid", "first instalment"), ("paid", "the rest")]


@pytest.mark.django_db
def test_a_refused_payment_leaves_the_invoice_unpaid():
    # given
    payment = MACHINES["payment"].record_in("failed")
    invoice = factories.invoice(account=payment.account)
    services.invoice_post(invoice=invoice, actor=factories.actor(), reason="ready to be paid")
    invoice_history = invoice.history.count()
    # when
    with pytest.raises(TransitionRefused):
        services.payment_apply(
            payment=payment, invoice=invoice, actor=factories.actor(), reason="retry"
        )
    # then
    invoice.refresh_from_db()
    assert (invoice.state, invoice.amount_paid) == (InvoiceState.POSTED, Decimal("0.0000"))
    assert invoice.history.count() == invoice_history
