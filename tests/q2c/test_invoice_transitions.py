"""The invoice state machine, case by case from its FSM metadata, run through the services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import ConditionFailed, TransitionRefused
from core.identifiers import PREFIXES, identifier_allocate
from core.money import Money
from q2c import services
from q2c.models import Invoice, InvoiceState
from tests import factories
from tests.q2c.helpers import (
    case_ids,
    fsm_allowed_cases,
    fsm_refused_cases,
    fsm_sources,
    fsm_states,
    last_history,
    walk_to,
)

# A payment leaves the invoice partially paid or paid, by its amount.
COMPUTED = {"apply_payment": [InvoiceState.PARTIALLY_PAID, InvoiceState.PAID]}


def _post(invoice: Invoice, *, target: str | None, actor: Actor, reason: str) -> Invoice:
    return services.invoice_post(invoice=invoice, actor=actor, reason=reason)


def _void(invoice: Invoice, *, target: str | None, actor: Actor, reason: str) -> Invoice:
    return services.invoice_void(invoice=invoice, actor=actor, reason=reason)


def _apply_payment(invoice: Invoice, *, target: str | None, actor: Actor, reason: str) -> Invoice:
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


STEPS = {"post": _post, "void": _void, "apply_payment": _apply_payment}
ALLOWED = fsm_allowed_cases(Invoice, computed=COMPUTED)
REFUSED = fsm_refused_cases(Invoice)


def _invoice_in(state: str) -> Invoice:
    return walk_to(factories.invoice(), state, steps=STEPS, computed=COMPUTED)


def test_every_transition_has_a_step():
    # given / when
    names = sorted({name for name, _, _ in ALLOWED} | {name for name, _ in REFUSED})
    # then
    assert names == sorted(STEPS)


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_states(Invoice))
def test_every_state_is_reached_through_the_services(state):
    # given
    invoice = factories.invoice()
    # when
    invoice = walk_to(invoice, state, steps=STEPS, computed=COMPUTED)
    # then
    invoice.refresh_from_db()
    assert invoice.state == state


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "source", "target"), ALLOWED, ids=case_ids(ALLOWED))
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    invoice = _invoice_in(source)
    history_before = invoice.history.count()
    # when
    STEPS[transition](invoice, target=target, actor=factories.actor(), reason="checked by test")
    # then
    invoice.refresh_from_db()
    assert invoice.state == target
    assert invoice.history.count() == history_before + 1
    assert last_history(invoice) == (target, "worker", "checked by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "state"), REFUSED, ids=case_ids(REFUSED))
def test_transition_is_refused_from_every_other_state(transition, state):
    # given
    invoice = _invoice_in(state)
    history_before = invoice.history.count()
    paid_before = invoice.amount_paid
    allowed = fsm_sources(Invoice, transition)
    # when
    with pytest.raises(TransitionRefused) as refused:
        STEPS[transition](invoice, target=None, actor=factories.actor(), reason="tried by test")
    # then
    assert type(refused.value) is TransitionRefused
    assert str(refused.value) == (
        f"{invoice.enterprise_id} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(allowed)})"
    )
    invoice.refresh_from_db()
    assert (invoice.state, invoice.amount_paid) == (state, paid_before)
    assert invoice.history.count() == history_before


@pytest.mark.django_db
def test_invoice_without_lines_cannot_post():
    # given
    account = factories.account()
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        invoice = Invoice.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["invoice"]),
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
        )
    history_before = invoice.history.count()
    # when
    with pytest.raises(ConditionFailed) as failed:
        services.invoice_post(invoice=invoice, actor=factories.actor(), reason="month end")
    # then
    assert str(failed.value) == f"{invoice.enterprise_id} cannot 'post': needs at least one line"
    invoice.refresh_from_db()
    assert (invoice.state, invoice.posted_at) == (InvoiceState.DRAFT, None)
    assert invoice.history.count() == history_before


@pytest.mark.django_db
def test_payments_add_up_to_paid():
    # given
    invoice = _invoice_in(InvoiceState.POSTED)
    actor = factories.actor()
    # when
    invoice = _apply_payment(invoice, target=None, actor=actor, reason="first instalment")
    partly = (invoice.state, invoice.amount_paid)
    invoice = _apply_payment(invoice, target=InvoiceState.PAID, actor=actor, reason="the rest")
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
def test_person_without_void_permission_is_denied(make_user):
    # given
    invoice = _invoice_in(InvoiceState.POSTED)
    history_before = invoice.history.count()
    person = Actor.person(make_user("sam", role="sales_ops"))
    # when
    with pytest.raises(PermissionDenied) as denied:
        services.invoice_void(invoice=invoice, actor=person, reason="wrong customer")
    # then
    assert str(denied.value) == f"sam may not 'void' {invoice.enterprise_id}"
    invoice.refresh_from_db()
    assert (invoice.state, invoice.void_reason) == (InvoiceState.POSTED, "")
    assert invoice.history.count() == history_before


@pytest.mark.django_db
def test_finance_ops_may_void(make_user):
    # given
    invoice = _invoice_in(InvoiceState.POSTED)
    fran = Actor.person(make_user("fran", role="finance_ops"))
    # when
    services.invoice_void(invoice=invoice, actor=fran, reason="wrong customer")
    # then
    invoice.refresh_from_db()
    assert (invoice.state, invoice.void_reason) == (InvoiceState.VOID, "wrong customer")
    assert last_history(invoice) == ("void", "fran", "wrong customer")
