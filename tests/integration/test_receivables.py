"""After the first order, over real HTTP with a real worker: billing's first invoice, a
partial payment, a refund and a credit note reach Tandem by signed webhooks and the ERP's
receivables once each, while the ERP loses its answers after committing; and a sales order
finance rejects in the ERP rejects the order, with an exception for sales ops."""

from __future__ import annotations

from typing import Any

import pytest

from exceptions.models import OperationalException
from masterdata.models import ExternalId
from orchestration.workflows.models import RunState, WorkflowRun
from q2c.models import CreditNote, Invoice, InvoiceState, Order, OrderState, Payment, Refund
from tests.integration.q2c_env import (
    Rig,
    rig_faults,
    rig_faults_clear,
    rig_records,
    rig_settings,
    wait_run_completed,
    wait_until,
)

pytestmark = pytest.mark.integration


def _by_reference(rig: Rig, collection: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rig_records(rig, "erp", collection):
        found.setdefault(row["externalId"], []).append(row)
    return found


def _posted(subject_id: str) -> WorkflowRun:
    return wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="receivable_posting", subject_id=subject_id, state=RunState.COMPLETED
        ).first(),
        what=f"{subject_id} posted to the ERP",
    )


def test_billing_money_movements_reach_tandem_and_the_erp_receivables_once(rig: Rig):
    # given: a live order whose first subscription invoice billing issued
    quote = rig.approve_quote()
    order = wait_until(
        lambda: (
            Order.objects.filter(quote__cpq_quote_id=quote["Id"], state=OrderState.ACTIVE)
            .select_related("account")
            .first()
        ),
        what="the order to become active",
    )
    wait_run_completed(order.enterprise_id)
    billing_invoice = next(
        row
        for row in rig_records(rig, "billing", "invoices")
        if row["subscription_details"]
        and row["subscription_details"]["metadata"].get("tandem_order") == order.enterprise_id
    )
    invoice = wait_until(
        lambda: Invoice.objects.filter(
            pk__in=ExternalId.objects.filter(
                system="billing", object_type="invoice", external_id=billing_invoice["id"]
            ).values("object_id")
        ).first(),
        what="billing's invoice mirrored",
    )
    # the ERP commits every change but its answers are lost for the rest of the test
    rig_faults(rig, "erp", lose_response_after_commit_rate=1, lose_response_hold_ms=0)
    half = billing_invoice["amount_remaining"] // 2
    # when
    paid = rig.sandbox.post("billing", f"/invoices/{billing_invoice['id']}/pay", {"amount": half})
    assert paid.status_code == 200, paid.text
    charge = rig_records(rig, "billing", "charges")[0]
    refunded = rig.sandbox.post("billing", "/refunds", {"charge": charge["id"], "amount": 1000})
    assert refunded.status_code == 200, refunded.text
    credited = rig.sandbox.post(
        "billing", "/credit_notes", {"invoice": billing_invoice["id"], "amount": 2000,
                                     "memo": "outage credit"},
    )  # fmt: skip
    assert credited.status_code == 200, credited.text
    payment = wait_until(lambda: Payment.objects.filter(invoice=invoice).first(), what="payment")
    refund = wait_until(lambda: Refund.objects.filter(payment=payment).first(), what="refund")
    note = wait_until(lambda: CreditNote.objects.filter(invoice=invoice).first(), what="note")
    for record in (invoice, payment, note, refund):
        _posted(record.enterprise_id)
    rig_faults_clear(rig, "erp")
    # then
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert (invoice.state, invoice.amount_paid) == (InvoiceState.PARTIALLY_PAID, payment.amount)
    assert payment.amount_refunded == 10
    assert (note.state, note.reason) == ("issued", "outage credit")
    invoices = _by_reference(rig, "invoices")
    assert len(invoices[invoice.enterprise_id]) == 1
    erp_invoice = invoices[invoice.enterprise_id][0]
    assert erp_invoice["total"] == f"{invoice.total_amount:.2f}"
    assert [len(_by_reference(rig, c)[r.enterprise_id]) for c, r in (
        ("customerpayments", payment), ("creditmemos", note), ("customerrefunds", refund),
    )] == [1, 1, 1]  # fmt: skip
    remaining = invoice.total_amount - payment.amount - note.amount
    assert erp_invoice["amountRemaining"] == f"{remaining:.2f}"


def test_a_sales_order_finance_rejects_in_the_erp_rejects_the_order(rig: Rig):
    # given: finance never approves on its own
    rig_settings(rig, erp_approval_delay_s=None)
    quote = rig.approve_quote()
    order = wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=quote["Id"], state=OrderState.SUBMITTED_TO_ERP
        ).first(),
        what="the order to reach the ERP",
    )
    [sales_order] = [
        row
        for row in rig_records(rig, "erp", "salesorders")
        if row["externalId"] == order.enterprise_id
    ]
    # when
    response = rig.sandbox.control(
        "POST", f"/erp/reject/{sales_order['internalId']}", {"reason": "credit limit exceeded"}
    )
    assert response.status_code == 200, response.text
    # then
    rejected = wait_until(
        lambda: Order.objects.filter(pk=order.pk, state=OrderState.REJECTED).first(),
        what="the order to be rejected",
    )
    assert rejected.rejection_reason.startswith("rejected in the ERP: credit limit exceeded")
    assert WorkflowRun.objects.get(subject_id=order.enterprise_id).state == RunState.CANCELLED
    exc = OperationalException.objects.get(error_class="ErpOrderRejected")
    assert (exc.owner_team, exc.correlation_id) == ("sales_ops", order.enterprise_id)
    assert rig_records(rig, "billing", "subscriptions") == []
