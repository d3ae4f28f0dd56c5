"""Posting billing's invoices, credit notes, payments and refunds to the ERP's receivables,
through the engine against the sandbox ERP on loopback: each once, a lost answer found by its
reference instead of posted twice, and what applies to a record not yet in the ERP waits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.money import Money
from masterdata.models import ExternalId
from orchestration.workflows import engine
from orchestration.workflows.models import RunState, StepRun, StepState, WorkflowRun
from q2c import services
from q2c.models import Invoice, Payment
from tests import factories
from tests.orchestration.connectors.helpers import faults_off, responses_lost
from tests.sandbox.helpers import SandboxClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def _invoice() -> Invoice:
    entity = factories.legal_entity(erp_subsidiary="2", tax_registration="GB999999973")
    account = factories.account(legal_entity=entity, address_line1="1 High St", city="London")
    invoice = factories.invoice(
        account=account,
        number="ABCD-0001",
        tax_amount=Decimal("180.00"),
        lines=[
            services.InvoiceLineInput(
                description="Platform seats", quantity=Decimal("25"), unit_price=Decimal("36.00")
            )
        ],
    )
    return services.invoice_post(invoice=invoice, actor=factories.actor(), reason="test setup")


def _payment(invoice: Invoice, amount: str) -> Payment:
    actor = factories.actor()
    payment = services.payment_record(
        account=invoice.account, amount=Money(Decimal(amount), invoice.currency),
        received_at=timezone.now(), actor=actor, reason="test setup",
    )  # fmt: skip
    services.payment_apply(payment=payment, invoice=invoice, actor=actor, reason="test setup")
    return Payment.objects.get(pk=payment.pk)


def _post(subject_id: str) -> WorkflowRun:
    """Start the posting run of ``subject_id`` and run its steps in this process."""
    run = engine.workflow_start(
        kind="receivable_posting", subject_id=subject_id, actor=factories.actor()
    )
    _run_queued(run)
    return WorkflowRun.objects.get(pk=run.pk)


def _run_queued(run: WorkflowRun) -> None:
    while True:
        step = StepRun.objects.filter(run=run, state=StepState.QUEUED).first()
        if step is None:
            return
        engine.step_execute(step_id=step.pk)


def _erp(sandbox: SandboxClient, collection: str) -> list[dict[str, Any]]:
    return list(sandbox.state("erp")["records"][collection])


def test_an_invoice_its_payment_credit_note_and_refund_reach_the_erp_once_each(sandbox):
    # given
    invoice = _invoice()
    payment = _payment(invoice, "400.00")
    note = services.credit_note_mirror(
        invoice=invoice, amount=Money(Decimal("100.00"), "GBP"), number="ABCD-0001-CN-01",
        issued_at=timezone.now(), credit_reason="outage credit", actor=factories.actor(),
        reason="test setup",
    )  # fmt: skip
    refund = services.payment_refund(
        payment=payment, amount=Money(Decimal("150.00"), "GBP"), refunded_at=timezone.now(),
        actor=factories.actor(), reason="test setup",
    )  # fmt: skip
    # when
    runs = [_post(record.enterprise_id) for record in (invoice, payment, note, refund)]
    again = _post(invoice.enterprise_id)
    # then
    assert [run.state for run in runs] == [RunState.COMPLETED] * 4
    assert again.pk == runs[0].pk
    [customer] = _erp(sandbox, "customers")
    [erp_invoice] = _erp(sandbox, "invoices")
    assert (customer["externalId"], customer["subsidiary"]) == (
        invoice.account.enterprise_id, {"id": "2"},
    )  # fmt: skip
    assert (erp_invoice["externalId"], erp_invoice["entity"]["id"], erp_invoice["total"]) == (
        invoice.enterprise_id, customer["internalId"], "1080.00",
    )  # fmt: skip
    lines = [(line["item"]["externalId"], line["amount"]) for line in erp_invoice["item"]["items"]]
    assert lines == [("BILLING", "900.00"), ("TAX", "180.00")]
    # 1080 - 400 paid - 100 credited
    assert erp_invoice["amountRemaining"] == "580.00"
    [erp_payment] = _erp(sandbox, "customerpayments")
    assert (erp_payment["externalId"], erp_payment["payment"], erp_payment["refunded"]) == (
        payment.enterprise_id, "400.00", "150.00",
    )  # fmt: skip
    [memo] = _erp(sandbox, "creditmemos")
    assert (memo["externalId"], memo["createdFrom"]["id"], memo["total"]) == (
        note.enterprise_id, erp_invoice["internalId"], "100.00",
    )  # fmt: skip
    [erp_refund] = _erp(sandbox, "customerrefunds")
    assert (erp_refund["externalId"], erp_refund["apply"]["doc"]["id"], erp_refund["total"]) == (
        refund.enterprise_id, erp_payment["internalId"], "150.00",
    )  # fmt: skip
    links = dict(
        ExternalId.objects.filter(system="erp").values_list("enterprise_id", "object_type")
    )
    assert links == {
        invoice.account.enterprise_id: "customer",
        invoice.enterprise_id: "receivable_invoice",
        payment.enterprise_id: "customer_payment",
        note.enterprise_id: "credit_memo",
        refund.enterprise_id: "customer_refund",
    }


def test_a_payment_posted_while_the_erp_answer_is_lost_is_found_not_posted_twice(sandbox):
    # given
    invoice = _invoice()
    _post(invoice.enterprise_id)
    payment = _payment(invoice, "1080.00")
    responses_lost(sandbox, "erp")
    run = engine.workflow_start(
        kind="receivable_posting", subject_id=payment.enterprise_id, actor=factories.actor()
    )
    _run_queued(run)
    post_step = StepRun.objects.get(run=run, name="post_to_erp")
    lost_state = post_step.state
    # when
    faults_off(sandbox, "erp")
    StepRun.objects.filter(pk=post_step.pk).update(next_attempt_at=timezone.now())
    engine.step_execute(step_id=post_step.pk)
    # then
    post_step.refresh_from_db()
    assert lost_state == StepState.RETRY_SCHEDULED
    assert (post_step.state, post_step.attempts, post_step.result["found"]) == (
        StepState.SUCCEEDED, 2, True,
    )  # fmt: skip
    [erp_payment] = _erp(sandbox, "customerpayments")
    assert (erp_payment["externalId"], erp_payment["payment"]) == (
        payment.enterprise_id, "1080.00",
    )  # fmt: skip
    [erp_invoice] = _erp(sandbox, "invoices")
    assert (erp_invoice["amountRemaining"], erp_invoice["status"]) == ("0.00", "paidInFull")


def test_a_payment_waits_for_its_invoice_to_reach_the_erp_without_using_up_attempts(sandbox):
    # given
    invoice = _invoice()
    payment = _payment(invoice, "100.00")
    # when
    run = _post(payment.enterprise_id)
    # then
    step = StepRun.objects.get(run=run, name="post_to_erp")
    assert (step.state, step.attempts) == (StepState.RETRY_SCHEDULED, 0)
    assert step.last_error == f"{invoice.enterprise_id} is not in the ERP's receivables yet"
    assert _erp(sandbox, "customerpayments") == []
