"""Invoices, payments (partial and failed), refunds, credit notes and voids from billing,
mirrored into the canonical records once each, correlated to their contract, version and
order, and handed to the ERP receivables posting; an ERP rejection of a sales order."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.money import Money
from exceptions.models import OperationalException
from masterdata.models import ExternalId
from masterdata.services import records as md_services
from orchestration.events.catalog import SCHEMA_DIR
from orchestration.events.errors import EventNotReady
from orchestration.events.services import inbound_event_receive
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent
from orchestration.tasks import process_inbound_event
from orchestration.workflows import engine
from orchestration.workflows.models import RunState, WorkflowRun
from q2c import services
from q2c.models import (
    Contract,
    CreditNote,
    Invoice,
    InvoiceState,
    Order,
    OrderState,
    Payment,
    PaymentState,
    Refund,
)
from tests import factories

pytestmark = pytest.mark.django_db

SECRETS = {"billing": "whsec_billing", "erp": "whsec_erp"}


@pytest.fixture(autouse=True)
def _secrets(webhook_secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET_ERP", SECRETS["erp"])


def _gbp(amount: str) -> Money:
    return Money(Decimal(amount), "GBP")


def _payload(event_type: str, event_id: str, **data: Any) -> dict[str, Any]:
    schema = json.loads(Path(SCHEMA_DIR, event_type, "v1.json").read_text())
    payload = json.loads(json.dumps(schema["examples"][0]))
    payload["event_id"] = event_id
    payload["data"].update(data)
    return payload


def _deliver(system: str, payload: dict[str, Any]) -> InboundEvent:
    body = json.dumps(payload).encode()
    receipt = inbound_event_receive(
        system=system,
        raw_body=body,
        headers={"X-Tandem-Signature": signature_header(secret=SECRETS[system], body=body)},
        now=time.time(),
    )
    assert receipt.http_status == 202, receipt
    process_inbound_event(receipt.event.pk)
    receipt.event.refresh_from_db()
    return receipt.event


def _deal() -> tuple[Order, Contract]:
    order = factories.order()
    contract = factories.contract(account=order.account, order=order)
    services.contract_activate(contract=contract, actor=factories.actor(), reason="test setup")
    return order, contract


def _invoice(order: Order, contract: Contract, event_id: str = "evt_inv_1") -> Invoice:
    event = _deliver(
        "billing",
        _payload(
            "invoice.posted",
            event_id,
            order_id=order.enterprise_id,
            contract_id=contract.enterprise_id,
            issue_date="2026-02-01",
        ),
    )
    assert event.status == "processed", event.rejection_reason
    return Invoice.objects.get(order=order)


def _paid(invoice_id: str, payment_id: str, amount: str, event_id: str) -> InboundEvent:
    return _deliver(
        "billing",
        _payload(
            "payment.received",
            event_id,
            external_payment_id=payment_id,
            external_invoice_id=invoice_id,
            amount=amount,
        ),
    )


def test_a_billing_invoice_is_mirrored_with_its_contract_version_and_posted_to_the_erp():
    # given
    order, contract = _deal()
    # when
    invoice = _invoice(order, contract)
    again = _deliver("billing", _payload("invoice.posted", "evt_inv_1_again",
                                         order_id=order.enterprise_id))  # fmt: skip
    # then
    assert (invoice.state, invoice.total, invoice.tax_amount) == (
        InvoiceState.POSTED, _gbp("1080.00"), Decimal("180.00"),
    )  # fmt: skip
    assert (invoice.contract, invoice.contract_version) == (contract, contract.versions.get())
    run = WorkflowRun.objects.get(subject_id=invoice.enterprise_id)
    assert (run.kind, run.order, run.steps.get(position=0).state) == (
        "receivable_posting", order, "queued",
    )  # fmt: skip
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed", "invoice in_1QxYz is already mirrored",
    )  # fmt: skip
    assert Invoice.objects.count() == 1


def test_partial_payments_leave_the_invoice_partially_paid_until_the_last_one():
    # given
    order, contract = _deal()
    invoice = _invoice(order, contract)
    # when
    first = _paid("in_1QxYz", "ch_1", "400.00", "evt_pay_1")
    duplicate = _paid("in_1QxYz", "ch_1", "400.00", "evt_pay_1_resent")
    invoice.refresh_from_db()
    state_between = (invoice.state, invoice.amount_paid)
    _paid("in_1QxYz", "ch_2", "680.00", "evt_pay_2")
    # then
    invoice.refresh_from_db()
    assert state_between == (InvoiceState.PARTIALLY_PAID, Decimal("400.00"))
    assert (invoice.state, invoice.amount_paid) == (InvoiceState.PAID, Decimal("1080.00"))
    assert first.status == "processed"
    assert (duplicate.status, duplicate.rejection_reason) == (
        "duplicate_absorbed", "payment ch_1 is already recorded",
    )  # fmt: skip
    payments = list(Payment.objects.order_by("amount").values_list("amount", "state", "invoice"))
    assert payments == [
        (Decimal("400.00"), PaymentState.APPLIED, invoice.pk),
        (Decimal("680.00"), PaymentState.APPLIED, invoice.pk),
    ]
    posted = set(WorkflowRun.objects.values_list("subject_id", flat=True))
    assert posted == {
        invoice.enterprise_id,
        *Payment.objects.values_list("enterprise_id", flat=True),
    }


def test_an_overpayment_is_rejected_and_changes_nothing():
    # given
    order, contract = _deal()
    invoice = _invoice(order, contract)
    # when
    event = _paid("in_1QxYz", "ch_big", "2000.00", "evt_pay_big")
    # then
    invoice.refresh_from_db()
    assert event.status == "rejected"
    assert (
        "payment 2,000.00 GBP exceeds the open balance 1,080.00 GBP of INV-"
        in event.rejection_reason
    )
    assert (invoice.state, invoice.amount_paid) == (InvoiceState.POSTED, Decimal("0.00"))
    assert Payment.objects.count() == 0


def test_a_failed_payment_is_recorded_failed_on_its_invoice_which_stays_open():
    # given
    order, contract = _deal()
    invoice = _invoice(order, contract)
    payload = _payload("payment.failed", "evt_fail_1")
    # when
    event = _deliver("billing", payload)
    again = _deliver("billing", {**payload, "event_id": "evt_fail_1_resent"})
    # then
    invoice.refresh_from_db()
    payment = Payment.objects.get()
    assert event.status == "processed"
    assert (payment.state, payment.failure_reason, payment.invoice, payment.amount) == (
        PaymentState.FAILED, "Your card was declined.", invoice, Decimal("1080.00"),
    )  # fmt: skip
    assert (invoice.state, invoice.amount_paid) == (InvoiceState.POSTED, Decimal("0.00"))
    assert again.status == "duplicate_absorbed"
    assert not WorkflowRun.objects.filter(subject_id=payment.enterprise_id).exists()
    assert payment.history.first().history_change_reason == "Your card was declined."


def test_refunds_in_parts_refund_the_payment_once_all_of_it_is_back():
    # given
    order, contract = _deal()
    invoice = _invoice(order, contract)
    _paid("in_1QxYz", "ch_1", "1080.00", "evt_pay_1")
    payment = Payment.objects.get()
    # when
    first = _deliver("billing", _payload("payment.refunded", "evt_re_1",
                                         external_payment_id="ch_1", amount="200.00"))  # fmt: skip
    resent = _payload("payment.refunded", "evt_re_1_again", external_payment_id="ch_1",
                      amount="200.00")  # fmt: skip
    duplicate = _deliver("billing", resent)
    payment.refresh_from_db()
    between = (payment.state, payment.amount_refunded)
    rest = _deliver("billing", _payload("payment.refunded", "evt_re_2", external_refund_id="re_2",
                                        external_payment_id="ch_1", amount="880.00"))  # fmt: skip
    # then
    payment.refresh_from_db()
    assert (first.status, rest.status) == ("processed", "processed")
    assert (duplicate.status, duplicate.rejection_reason) == (
        "duplicate_absorbed", "refund re_1QxYz is already recorded",
    )  # fmt: skip
    assert between == (PaymentState.APPLIED, Decimal("200.00"))
    assert (payment.state, payment.amount_refunded) == (PaymentState.REFUNDED, Decimal("1080.00"))
    refunds = list(Refund.objects.order_by("amount").values_list("amount", "invoice", "reason"))
    assert refunds == [
        (Decimal("200.00"), invoice.pk, "requested_by_customer"),
        (Decimal("880.00"), invoice.pk, "requested_by_customer"),
    ]
    for refund in Refund.objects.all():
        assert WorkflowRun.objects.filter(subject_id=refund.enterprise_id).exists()


def test_a_refund_of_more_than_is_left_is_rejected_and_changes_nothing():
    # given
    order, contract = _deal()
    _invoice(order, contract)
    _paid("in_1QxYz", "ch_1", "100.00", "evt_pay_1")
    # when
    event = _deliver("billing", _payload("payment.refunded", "evt_re_big",
                                         external_payment_id="ch_1", amount="150.00"))  # fmt: skip
    # then
    payment = Payment.objects.get()
    assert event.status == "rejected"
    assert event.rejection_reason.startswith("a refund of 150.00 GBP from PAY-")
    assert (payment.state, payment.amount_refunded) == (PaymentState.APPLIED, Decimal("0.00"))
    assert Refund.objects.count() == 0


def test_a_refund_before_its_payment_waits():
    # given
    order, contract = _deal()
    _invoice(order, contract)
    payload = _payload("payment.refunded", "evt_re_early", external_payment_id="ch_unknown")
    body = json.dumps(payload).encode()
    receipt = inbound_event_receive(
        system="billing",
        raw_body=body,
        headers={"X-Tandem-Signature": signature_header(secret=SECRETS["billing"], body=body)},
        now=time.time(),
    )
    # when
    with pytest.raises(EventNotReady):
        process_inbound_event(receipt.event.pk)
    # then
    receipt.event.refresh_from_db()
    assert (receipt.event.status, receipt.event.rejection_reason) == ("received", "")
    assert Refund.objects.count() == 0


def test_an_erp_refund_of_a_payment_tandem_posted_there_refunds_that_payment():
    # given: billing's payment, posted to the ERP's receivables as customer payment 812
    order, contract = _deal()
    invoice = _invoice(order, contract)
    _paid("in_1QxYz", "ch_1", "1080.00", "evt_pay_1")
    payment = Payment.objects.get()
    md_services.external_id_link(
        record=payment, system="erp", object_type="customer_payment", external_id="812",
        actor=factories.actor(), reason="posted to the ERP's receivables",
    )  # fmt: skip
    # when: finance refunds part of it in the ERP, and polling brings the refund back
    event = _deliver("erp", _payload("payment.refunded", "tryton-refund-901-posted",
                                     external_refund_id="901", external_payment_id="812",
                                     amount="80.00"))  # fmt: skip
    # then
    payment.refresh_from_db()
    assert (event.status, event.rejection_reason) == ("processed", "")
    assert payment.amount_refunded == Decimal("80.00")
    refund = Refund.objects.get()
    assert (refund.amount, refund.invoice) == (Decimal("80.00"), invoice)
    assert ExternalId.objects.get(enterprise_id=refund.enterprise_id).external_id == "901"


def test_a_credit_note_is_mirrored_issued_once_and_posted():
    # given
    order, contract = _deal()
    invoice = _invoice(order, contract)
    payload = _payload("credit_note.issued", "evt_cn_1")
    # when
    event = _deliver("billing", payload)
    again = _deliver("billing", {**payload, "event_id": "evt_cn_1_again"})
    # then
    note = CreditNote.objects.get()
    assert event.status == "processed"
    assert (note.state, note.invoice, note.account, note.money, note.number, note.reason) == (
        "issued", invoice, invoice.account, _gbp("100.00"), "ABCD1234-0001-CN-01",
        "service outage credit",
    )  # fmt: skip
    assert note.issued_at == dt.datetime(2026, 1, 22, 9, 0, tzinfo=dt.UTC)
    assert again.status == "duplicate_absorbed"
    assert WorkflowRun.objects.filter(subject_id=note.enterprise_id).count() == 1
    assert ExternalId.objects.get(enterprise_id=note.enterprise_id).external_id == "cn_1QxYz"


def test_a_credit_note_in_another_currency_is_rejected_and_changes_nothing():
    # given
    order, contract = _deal()
    _invoice(order, contract)
    # when
    event = _deliver("billing", _payload("credit_note.issued", "evt_cn_usd", currency="USD"))
    # then
    assert (event.status, event.rejection_reason) == (
        "rejected", "a USD credit note cannot credit a GBP invoice",
    )  # fmt: skip
    assert CreditNote.objects.count() == 0


def test_a_voided_invoice_is_void_once():
    # given
    order, contract = _deal()
    invoice = _invoice(order, contract)
    # when
    event = _deliver("billing", _payload("invoice.voided", "evt_void_1"))
    again = _deliver("billing", _payload("invoice.voided", "evt_void_1_again"))
    # then
    invoice.refresh_from_db()
    assert event.status == "processed"
    assert (invoice.state, invoice.void_reason) == (
        InvoiceState.VOID, "issued in error (evt_void_1)",
    )  # fmt: skip
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed", f"{invoice.enterprise_id} is already void",
    )  # fmt: skip


def _submitted_order() -> tuple[Order, WorkflowRun]:
    order = factories.order()
    actor = factories.actor()
    services.order_validate(order=order, actor=actor, reason="test setup")
    services.order_submit_to_erp(order=order, actor=actor, reason="test setup")
    run = engine.workflow_start(
        kind="quote_to_cash", subject_id=order.enterprise_id, order=order, actor=actor
    )
    return order, run


def test_an_erp_rejection_rejects_the_order_cancels_its_run_and_asks_sales_ops():
    # given
    order, run = _submitted_order()
    payload = _payload("order.rejected", "evt_rej_1", order_id=order.enterprise_id)
    # when
    event = _deliver("erp", payload)
    again = _deliver("erp", {**payload, "event_id": "evt_rej_1_again"})
    # then
    order.refresh_from_db()
    run.refresh_from_db()
    assert event.status == "processed"
    assert (order.state, order.rejection_reason) == (
        OrderState.REJECTED, "rejected in the ERP: credit limit exceeded (evt_rej_1)",
    )  # fmt: skip
    assert order.history.first().history_user.username == "connector:erp"
    assert run.state == RunState.CANCELLED
    exc = OperationalException.objects.get()
    assert (exc.category, exc.owner_team, exc.error_class, exc.correlation_id) == (
        "validation", "sales_ops", "ErpOrderRejected", order.enterprise_id,
    )  # fmt: skip
    assert exc.message == (
        f"{order.enterprise_id}: finance rejected ERP sales order 5001: credit limit exceeded"
    )
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed", f"{order.enterprise_id} is already rejected",
    )  # fmt: skip


def test_an_erp_rejection_of_an_accepted_order_is_rejected_and_changes_nothing():
    # given
    order, run = _submitted_order()
    services.order_accept(order=order, actor=factories.actor(), reason="test setup")
    # when
    event = _deliver("erp", _payload("order.rejected", "evt_rej_late",
                                     order_id=order.enterprise_id))  # fmt: skip
    # then
    order.refresh_from_db()
    run.refresh_from_db()
    assert event.status == "rejected"
    assert event.rejection_reason == (
        f"{order.enterprise_id} is accepted: a rejection from the ERP applies only to an order "
        "submitted to it and not accepted yet"
    )
    assert order.state == OrderState.ACCEPTED
    assert run.state != RunState.CANCELLED
    assert OperationalException.objects.count() == 0
