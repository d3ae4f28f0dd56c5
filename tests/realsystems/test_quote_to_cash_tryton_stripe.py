"""Quote to cash with both real systems at once: Tryton as the ERP and localstripe as billing
(the sandbox stands in for CPQ, CRM, tax and payments). A real worker runs the workflow; the
assertions read each system's own records."""

from __future__ import annotations

from decimal import Decimal

import pytest

from masterdata.models import ExternalId
from orchestration.connectors.stripe.billing import plan_id_for
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.tasks import poll_systems
from q2c.models import ContractState, Order, OrderState
from tests.integration.q2c_env import Rig, wait_run_completed, wait_until
from tests.realsystems.localstripe_server import LocalStripe

pytestmark = pytest.mark.integration


def test_a_quote_goes_live_in_tryton_and_is_billed_in_stripe_after_tryton_accepted_it(
    tryton_stripe_rig: Rig, localstripe: LocalStripe
):
    # given: the quote is approved; the worker put the customer in both systems and the
    # sale in Tryton, and stops there until finance confirms the sale
    quote = tryton_stripe_rig.approve_quote()
    order = wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=quote["Id"], state=OrderState.SUBMITTED_TO_ERP
        ).first(),
        what="the sale to be submitted to Tryton",
    )
    erp = TrytonErp()
    sale = erp.sales_order_find(reference=order.enterprise_id)
    assert sale is not None and sale.status == "quotation"
    [customer] = localstripe.get("/v1/customers", limit=100)["data"]
    assert localstripe.get("/v1/subscriptions", status="all")["data"] == []
    localstripe.card_on_file(str(customer["id"]))

    # when: finance confirms the sale in Tryton and the beat polls
    erp.sales_order_confirm(sales_order_id=sale.id)
    poll_systems.delay()
    order = wait_until(
        lambda: Order.objects.filter(pk=order.pk, state=OrderState.ACTIVE).first(),
        what="the order to become active",
    )

    # then: Tryton's own records
    sales = erp.search_read(
        "sale.sale", [["reference", "=", order.enterprise_id]],
        ["id", "state", "untaxed_amount", "tax_amount", "total_amount", "invoices"],
        operation="test_read",
    )  # fmt: skip
    assert [(row["id"], row["state"]) for row in sales] == [(int(sale.id), "processing")]
    assert (sales[0]["untaxed_amount"], sales[0]["tax_amount"], sales[0]["total_amount"]) == (
        Decimal("2400.00"), Decimal("480.00"), Decimal("2880.00"),
    )  # fmt: skip
    tryton_invoice = erp.invoice_find(reference=f"{order.enterprise_id}-OT")
    assert tryton_invoice is not None
    assert sales[0]["invoices"] == [int(tryton_invoice.id)]
    assert (tryton_invoice.status, tryton_invoice.data["total"]) == ("posted", "1800.00")
    assert tryton_invoice.data["tax_total"] == "300.00"
    # localstripe's own records
    contract = order.contracts.get()
    [subscription] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    assert (subscription["status"], subscription["customer"]) == ("active", customer["id"])
    assert subscription["metadata"] == {
        "tandem_order": order.enterprise_id,
        "tandem_contract": contract.enterprise_id,
    }
    [item] = subscription["items"]["data"]
    assert (item["plan"]["id"], item["plan"]["amount"], item["quantity"]) == (
        plan_id_for("prod_platpro:GBP:36.00:month"), 3600, 25,
    )  # fmt: skip
    [invoice] = localstripe.get("/v1/invoices", subscription=subscription["id"])["data"]
    assert (invoice["status"], invoice["total"], invoice["amount_paid"]) == ("paid", 90000, 90000)
    # and Tandem's
    wait_run_completed(order.enterprise_id)
    assert contract.state == ContractState.ACTIVE
    assert set(
        ExternalId.objects.filter(system__in=["erp", "billing"]).values_list(
            "system", "object_type", "external_id"
        )
    ) == {
        ("erp", "customer", sale.data["customer_id"]),
        ("erp", "sales_order", sale.id),
        ("billing", "customer", customer["id"]),
        ("billing", "subscription", subscription["id"]),
    }
