"""Quote to cash end to end with localstripe as billing: the sandbox CPQ approves a quote, a
real worker runs the workflow against the sandbox ERP and Stripe (localstripe) through the
official SDK, and localstripe's own signed webhooks come back to Tandem's billing endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from masterdata.models import ExternalId
from orchestration.connectors.stripe.billing import plan_id_for
from orchestration.models import InboundEvent, OutboundCall
from orchestration.workflows.engine import step_key
from q2c.models import ContractState, Order, OrderState
from tests.integration.q2c_env import Rig, wait_run_completed, wait_until
from tests.realsystems.localstripe_server import LocalStripe

pytestmark = pytest.mark.integration


def _sales_order(rig: Rig, order_id: str) -> dict[str, Any] | None:
    orders = rig.sandbox.state("erp")["records"]["salesorders"]
    return next((o for o in orders if o.get("externalId") == order_id), None)


def test_an_approved_quote_is_billed_in_stripe_once_after_the_erp_accepted_it(
    stripe_rig: Rig, localstripe: LocalStripe
):
    # given
    quote = stripe_rig.approve_quote()
    order = wait_until(
        lambda: Order.objects.filter(quote__cpq_quote_id=quote["Id"]).first(), what="the order"
    )
    sales_order = wait_until(
        lambda: _sales_order(stripe_rig, order.enterprise_id), what="the ERP sales order"
    )
    # The customer exists in Stripe before the ERP accepted the order, and nothing is billed.
    [customer] = localstripe.get("/v1/customers", limit=100)["data"]
    assert localstripe.get("/v1/subscriptions", status="all")["data"] == []
    localstripe.card_on_file(str(customer["id"]))  # the customer's card, as Checkout takes it
    # when
    approved = stripe_rig.sandbox.control("POST", f"/erp/approve/{sales_order['internalId']}")
    assert approved.status_code == 200, approved.text
    order = wait_until(
        lambda: Order.objects.filter(pk=order.pk, state=OrderState.ACTIVE).first(),
        what="the order to become active",
    )
    # then: localstripe's own records
    account = order.account
    assert customer["metadata"]["tandem_account"] == account.enterprise_id
    [subscription] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    contract = order.contracts.get()
    assert subscription["status"] == "active"
    assert subscription["customer"] == customer["id"]
    assert subscription["metadata"] == {
        "tandem_order": order.enterprise_id,
        "tandem_contract": contract.enterprise_id,
    }
    [item] = subscription["items"]["data"]
    assert (item["plan"]["id"], item["plan"]["amount"], item["plan"]["currency"]) == (
        plan_id_for("prod_platpro:GBP:36.00:month"), 3600, "gbp",
    )  # fmt: skip
    assert (item["plan"]["interval"], item["quantity"]) == ("month", 25)
    [invoice] = localstripe.get("/v1/invoices", subscription=subscription["id"])["data"]
    assert (invoice["status"], invoice["total"], invoice["amount_paid"]) == ("paid", 90000, 90000)
    # and Tandem's
    wait_run_completed(order.enterprise_id)
    assert contract.state == ContractState.ACTIVE
    assert set(
        ExternalId.objects.filter(system="billing").values_list("object_type", "external_id")
    ) == {("customer", customer["id"]), ("subscription", subscription["id"])}
    creates = OutboundCall.objects.filter(system="billing", operation="subscription_create")
    assert list(creates.values_list("status_code", "idempotency_key")) == [
        (200, step_key(subject_id=order.enterprise_id, subject_version=1,
                       step="create_subscription")),
    ]  # fmt: skip
    # localstripe's signed webhook for the subscription reached the billing endpoint
    event = wait_until(
        lambda: InboundEvent.objects.filter(
            system="billing", event_type="customer.subscription.created", status="processed"
        ).first(),
        what="customer.subscription.created to be processed",
    )
    assert (event.signature_valid, event.canonical_type) == (True, "subscription.activated")
    created = wait_until(
        lambda: InboundEvent.objects.filter(
            system="billing", event_type="customer.created", status="rejected"
        ).first(),
        what="customer.created to be kept as unmappable",
    )
    assert created.rejection_reason == (
        "Stripe event type 'customer.created' has no canonical counterpart"
    )
