"""Quote to cash end to end with a real Tryton as the ERP: the sandbox CPQ approves a quote,
a real worker creates the customer and the sale in Tryton, waits until finance confirms the
sale in Tryton (read back by polling, Tryton has no webhooks), has the sandbox billing start
the subscription, invoices the one-time lines in Tryton, and mirrors the posted invoice."""

from __future__ import annotations

from decimal import Decimal

import pytest

from masterdata.models import ExternalId
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.models import InboundEvent, PollCursor
from orchestration.tasks import poll_systems
from q2c.models import Invoice, Order, OrderState, Payment
from tests.integration.q2c_env import Rig, wait_run_completed, wait_until
from tests.realsystems.helpers import tryton_pay_in_full

pytestmark = pytest.mark.integration


def test_an_approved_quote_goes_live_with_tryton_as_the_erp(tryton_rig: Rig):
    # given: the quote is approved and the worker has put the sale in Tryton
    quote = tryton_rig.approve_quote()
    order = wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=quote["Id"], state=OrderState.SUBMITTED_TO_ERP
        ).first(),
        what="the sale to be submitted to Tryton",
    )
    erp = TrytonErp()
    sale = erp.sales_order_find(reference=order.enterprise_id)
    assert sale is not None and sale.status == "quotation"
    # a poll before finance confirmed the sale does not accept the order
    poll_systems.delay()
    wait_until(
        lambda: PollCursor.objects.filter(system="erp", stream="invoices").exclude(
            last_run_at=None
        ),
        what="a first poll",
    )
    order.refresh_from_db()
    assert order.state == OrderState.SUBMITTED_TO_ERP
    assert not InboundEvent.objects.filter(event_id=f"tryton-sale-{sale.id}-accepted").exists()

    # when: finance confirms the sale in Tryton, and the beat polls
    erp.sales_order_confirm(sales_order_id=sale.id)
    poll_systems.delay()
    order = wait_until(
        lambda: Order.objects.filter(pk=order.pk, state=OrderState.ACTIVE).first(),
        what="the order to become active",
    )
    poll_systems.delay()  # the invoice Tandem had posted in Tryton comes back
    link = wait_until(
        lambda: ExternalId.objects.filter(system="erp", object_type="invoice").first(),
        what="Tryton's invoice to be mirrored",
    )
    invoice = Invoice.objects.get(pk=link.object_id)

    # finance records the customer's payment in Tryton; the next poll brings it back
    tryton_pay_in_full(erp, int(link.external_id))
    poll_systems.delay()
    payment_link = wait_until(
        lambda: ExternalId.objects.filter(system="erp", object_type="payment").first(),
        what="the payment to be mirrored",
    )
    invoice.refresh_from_db()

    # then: Tryton's own records
    sales = erp.search_read(
        "sale.sale", [["reference", "=", order.enterprise_id]],
        ["id", "state", "untaxed_amount", "tax_amount", "total_amount", "invoices"],
        operation="test_read",
    )  # fmt: skip
    assert len(sales) == 1
    assert sales[0]["state"] == "done"  # confirmed, invoiced and paid
    assert (sales[0]["untaxed_amount"], sales[0]["tax_amount"], sales[0]["total_amount"]) == (
        Decimal("2400.00"), Decimal("480.00"), Decimal("2880.00"),
    )  # fmt: skip
    tryton_invoice = erp.invoice_find(reference=f"{order.enterprise_id}-OT")
    assert tryton_invoice is not None
    assert sales[0]["invoices"] == [int(tryton_invoice.id)]
    assert (tryton_invoice.status, tryton_invoice.data["total"]) == ("paid", "1800.00")
    assert tryton_invoice.data["tax_total"] == "300.00"
    parties = erp.search_read(
        "party.party", [["identifiers.code", "=", order.account.enterprise_id]], ["id"],
        operation="test_read",
    )  # fmt: skip
    assert [str(row["id"]) for row in parties] == [sale.data["customer_id"]]
    # and Tandem's
    wait_run_completed(order.enterprise_id)
    assert (invoice.order, invoice.state, invoice.currency) == (order, "paid", "GBP")
    assert invoice.amount_paid == Decimal("1800.00")
    payment = Payment.objects.get(pk=payment_link.object_id)
    assert (payment.amount, payment.currency) == (Decimal("1800.00"), "GBP")
    assert (invoice.total_amount, invoice.tax_amount) == (Decimal("1800.00"), Decimal("300.00"))
    # billing's invoice is posted to Tryton's receivables, in the sale's company
    receivable = wait_until(
        lambda: ExternalId.objects.filter(system="erp", object_type="receivable_invoice").first(),
        what="billing's invoice to be posted to Tryton",
    )
    company = erp.rpc(
        "test_read", "model.account.invoice.read", [[int(receivable.external_id)], ["company"]]
    )[0]["company"]
    assert (company, sale.data["company_id"]) == (2, "2")
    assert set(
        ExternalId.objects.filter(system="erp").values_list("object_type", "external_id")
    ) == {
        ("customer", sale.data["customer_id"]),
        ("sales_order", sale.id),
        ("invoice", tryton_invoice.id),
        ("payment", f"invoice-{tryton_invoice.id}-paid"),
        ("receivable_invoice", receivable.external_id),
    }
    accepted = InboundEvent.objects.get(event_id=f"tryton-sale-{sale.id}-accepted")
    assert (accepted.status, accepted.canonical_type) == ("processed", "order.accepted")
    subscriptions = [
        row
        for row in tryton_rig.sandbox.state("billing")["records"]["subscriptions"]
        if (row.get("metadata") or {}).get("tandem_order") == order.enterprise_id
    ]
    assert len(subscriptions) == 1
