"""The payment state machine: applied to an invoice, failed, or refunded once applied."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from core.audit import Actor
from core.errors import TransitionRefused
from core.money import Money
from core.transitions import transition_apply
from q2c import services
from q2c.models import InvoiceState, Payment
from tests import factories
from tests.q2c.helpers import (
    case_ids,
    fsm_allowed_cases,
    fsm_refused_cases,
    fsm_sources,
    last_history,
    walk_to,
)


def _apply(payment: Payment, *, target: str | None, actor: Actor, reason: str) -> Payment:
    invoice = factories.invoice(account=payment.account)
    services.invoice_post(invoice=invoice, actor=actor, reason="ready to be paid")
    services.payment_apply(payment=payment, invoice=invoice, actor=actor, reason=reason)
    return payment


def _fail(payment: Payment, *, target: str | None, actor: Actor, reason: str) -> Payment:
    # Failures and refunds arrive with the payment events; until then the bare transitions.
    return transition_apply(payment, "fail", actor=actor, reason=reason, reason_text=reason)


def _refund(payment: Payment, *, target: str | None, actor: Actor, reason: str) -> Payment:
    return transition_apply(payment, "refund", actor=actor, reason=reason)


STEPS = {"apply": _apply, "fail": _fail, "refund": _refund}
ALLOWED = fsm_allowed_cases(Payment, computed={})
REFUSED = fsm_refused_cases(Payment)


def _payment() -> Payment:
    return services.payment_record(
        account=factories.account(),
        amount=Money(Decimal("40.00"), "GBP"),
        received_at=timezone.now(),
        actor=factories.actor(),
        reason="test setup",
    )


def test_every_transition_has_a_step():
    # given / when
    names = sorted({name for name, _, _ in ALLOWED} | {name for name, _ in REFUSED})
    # then
    assert names == sorted(STEPS)


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "source", "target"), ALLOWED, ids=case_ids(ALLOWED))
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    payment = walk_to(_payment(), source, steps=STEPS)
    history_before = payment.history.count()
    # when
    STEPS[transition](payment, target=target, actor=Actor.system("worker"), reason="by test")
    # then
    payment.refresh_from_db()
    assert payment.state == target
    assert payment.history.count() == history_before + 1
    assert last_history(payment) == (target, "worker", "by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "state"), REFUSED, ids=case_ids(REFUSED))
def test_transition_is_refused_from_every_other_state(transition, state):
    # given
    payment = walk_to(_payment(), state, steps=STEPS)
    history_before = payment.history.count()
    invoice_before = payment.invoice_id
    # when
    with pytest.raises(TransitionRefused) as refused:
        STEPS[transition](payment, target=None, actor=Actor.system("worker"), reason="by test")
    # then
    assert str(refused.value) == (
        f"{payment.enterprise_id} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(fsm_sources(Payment, transition))})"
    )
    payment.refresh_from_db()
    assert (payment.state, payment.invoice_id) == (state, invoice_before)
    assert payment.history.count() == history_before


@pytest.mark.django_db
def test_a_refused_payment_leaves_the_invoice_unpaid():
    # given
    payment = walk_to(_payment(), "failed", steps=STEPS)
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
