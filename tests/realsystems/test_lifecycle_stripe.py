"""The rest of a contract's life with localstripe as billing, end to end over real HTTP: CPQ
(the sandbox) processes a renewal, a cancellation or a decrease, its signed webhook reaches
Tandem, a real worker runs the workflow against the sandbox ERP and Stripe (localstripe)
through the official SDK, and localstripe's own signed events come back. A cancellation made
in Stripe itself arrives as Stripe's customer.subscription.deleted and becomes the work."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from django.utils import timezone

from orchestration.connectors.stripe.billing import plan_id_for
from orchestration.models import InboundEvent, OutboundCall
from orchestration.workflows.engine import step_key
from orchestration.workflows.models import RunState, StepRun, WorkflowRun
from q2c.lifecycle import add_months
from q2c.models import Contract, ContractState, CreditNote, Order, OrderState
from tests.integration.q2c_env import Rig, rig_records, wait_run_completed, wait_until
from tests.realsystems.localstripe_server import LocalStripe

pytestmark = pytest.mark.integration

SEATS_PLAN = plan_id_for("prod_platpro:GBP:36.00:month")


def _live(rig: Rig, localstripe: LocalStripe, **quote_fields: Any) -> Contract:
    """A contract live in the sandbox ERP and in localstripe (25 seats at 36.00 net)."""
    quote = rig.approve_quote(**quote_fields)
    order = wait_until(
        lambda: Order.objects.filter(quote__cpq_quote_id=quote["Id"]).first(), what="the order"
    )
    sales_order = wait_until(
        lambda: _erp_record(rig, "salesorders", order.enterprise_id), what="the ERP sales order"
    )
    [customer] = localstripe.get("/v1/customers", limit=100)["data"]
    localstripe.card_on_file(str(customer["id"]))
    approved = rig.sandbox.control("POST", f"/erp/approve/{sales_order['internalId']}")
    assert approved.status_code == 200, approved.text
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, state=OrderState.ACTIVE).first(),
        what="the first order to go live",
    )
    wait_run_completed(order.enterprise_id)
    return order.contracts.get()


def _erp_record(rig: Rig, collection: str, reference: str) -> dict[str, Any] | None:
    return next(
        (r for r in rig_records(rig, "erp", collection) if r.get("externalId") == reference), None
    )


def _subscription(localstripe: LocalStripe) -> dict[str, Any]:
    [subscription] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    return subscription


def _unused_unit_credit(net: Decimal) -> Decimal:
    """What a unit's unused part of this month is worth from today (monthly billing from the
    1st): the net price times the days left over the month's days."""
    today = timezone.localdate()
    period_start = today.replace(day=1)
    end = add_months(period_start, 1)
    return (net * (end - today).days / (end - period_start).days).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )


def _absorbed_deletion(subscription_id: str) -> InboundEvent:
    return wait_until(
        lambda: InboundEvent.objects.filter(
            system="billing", event_type="customer.subscription.deleted",
            status="duplicate_absorbed",
        ).first(),
        what=f"customer.subscription.deleted of {subscription_id} to be absorbed",
    )  # fmt: skip


def test_a_cancellation_now_cancels_in_stripe_with_proration_once_and_credits_in_tandem(
    stripe_rig: Rig, localstripe: LocalStripe
):
    # given
    start = timezone.localdate().replace(day=1)
    contract = _live(stripe_rig, localstripe, SBQQ__StartDate__c=start.isoformat())
    before = _subscription(localstripe)
    # when: CPQ processed a cancellation from today
    response = stripe_rig.sandbox.post(
        "cpq", f"/contracts/{contract.enterprise_id}/cancellations",
        {"effective_date": timezone.localdate().isoformat(), "reason": "customer left",
         "mode": "now"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    run = wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="cancellation", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the cancellation run to complete",
    )
    # then: Stripe's subscription is cancelled, asked once with proration and the step's key
    after = _subscription(localstripe)
    assert (after["id"], after["status"], after["cancel_at_period_end"]) == (
        before["id"], "canceled", False,
    )  # fmt: skip
    [cancel] = OutboundCall.objects.filter(system="billing", operation="subscription_cancel")
    assert (cancel.method, cancel.path, cancel.status_code) == (
        "DELETE", f"/v1/subscriptions/{before['id']}", 200,
    )  # fmt: skip
    assert cancel.idempotency_key == step_key(
        subject_id=contract.enterprise_id, subject_version=2, step="cancel_subscription"
    )
    # the ERP has the return, Tandem the credit note, and the contract is cancelled
    unit = _unused_unit_credit(Decimal("36.00"))
    returned = _erp_record(stripe_rig, "returnauthorizations", f"{contract.enterprise_id}:v2")
    assert returned is not None
    assert [(line["quantity"], line["rate"]) for line in returned["item"]["items"]] == [
        ("25", f"{unit}")
    ]
    note = CreditNote.objects.get(contract=contract)
    assert (note.state, note.amount, note.currency) == (
        "issued", (unit * 25).quantize(Decimal("0.01")), "GBP",
    )  # fmt: skip
    contract.refresh_from_db()
    assert contract.state == ContractState.CANCELLED
    step = StepRun.objects.get(run=run, name="cancel_subscription").result
    assert (step["found"], step["prorate"], step["at_period_end"]) == ([False], True, False)
    # localstripe's signed customer.subscription.deleted of it changed nothing more
    deleted = _absorbed_deletion(before["id"])
    version = contract.versions.get(number=2)
    assert deleted.rejection_reason == (
        f"{contract.enterprise_id} is already cancelled by v2 ({version.cause_ref})"
    )
    assert deleted.signature_valid is True
    assert list(contract.versions.values_list("number", "kind")) == [
        (1, "initial"), (2, "cancellation"),
    ]  # fmt: skip


def test_a_cancellation_at_term_end_lets_stripe_run_out_the_period(
    stripe_rig: Rig, localstripe: LocalStripe
):
    # given: a contract whose twelve-month term ends today
    start = add_months(timezone.localdate(), -12) + dt.timedelta(days=1)
    contract = _live(stripe_rig, localstripe, SBQQ__StartDate__c=start.isoformat())
    assert contract.end_date == timezone.localdate()
    before = _subscription(localstripe)
    # when
    response = stripe_rig.sandbox.post(
        "cpq", f"/contracts/{contract.enterprise_id}/cancellations",
        {"effective_date": contract.end_date.isoformat(), "reason": "not renewing",
         "mode": "term_end"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="cancellation", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the cancellation run to complete",
    )
    # then: Stripe bills no further period; nothing is credited anywhere
    after = _subscription(localstripe)
    assert (after["id"], after["status"], after["cancel_at_period_end"]) == (
        before["id"], "active", True,
    )  # fmt: skip
    [cancel] = OutboundCall.objects.filter(system="billing", operation="subscription_cancel")
    assert (cancel.method, cancel.path, cancel.idempotency_key) == (
        "POST", f"/v1/subscriptions/{before['id']}",
        step_key(subject_id=contract.enterprise_id, subject_version=2,
                 step="cancel_subscription"),
    )  # fmt: skip
    assert "cancel_at_period_end" in cancel.request_body
    assert _erp_record(stripe_rig, "returnauthorizations", f"{contract.enterprise_id}:v2") is None
    assert not CreditNote.objects.filter(contract=contract).exists()
    contract.refresh_from_db()
    assert contract.state == ContractState.CANCELLED


def test_a_decrease_downgrades_the_stripe_subscription_with_a_proration_and_a_credit_note(
    stripe_rig: Rig, localstripe: LocalStripe
):
    # given
    start = timezone.localdate().replace(day=1)
    contract = _live(stripe_rig, localstripe, SBQQ__StartDate__c=start.isoformat())
    before = _subscription(localstripe)
    today = timezone.localdate()
    line = {
        "product_code": "PLAT-PRO", "description": "Platform Pro seats", "kind": "recurring",
        "quantity": "20", "unit_price": "40.00", "discount_percent": "10",
        "billing_period": "month", "term_start": today.isoformat(),
        "term_end": contract.end_date.isoformat(),
    }  # fmt: skip
    # when: CPQ processed a decrease from 25 to 20 seats from today
    response = stripe_rig.sandbox.post(
        "cpq", f"/contracts/{contract.enterprise_id}/amendments",
        {"effective_date": today.isoformat(), "lines": [line], "base_version": 1},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    amendment = wait_until(
        lambda: Order.objects.filter(amends=contract, state=OrderState.ACTIVE).first(),
        what="the decrease to go live",
    )
    wait_run_completed(amendment.enterprise_id)
    # then: the same subscription bills 20 seats on the same plan, updated once with
    # proration and the step's key
    after = _subscription(localstripe)
    assert (after["id"], after["status"]) == (before["id"], "active")
    assert [(item["plan"]["id"], item["quantity"]) for item in after["items"]["data"]] == [
        (SEATS_PLAN, 20)
    ]
    [update] = OutboundCall.objects.filter(system="billing", operation="subscription_update")
    assert '"prorate": "true"' in update.request_body
    assert update.idempotency_key == step_key(
        subject_id=amendment.enterprise_id, subject_version=1, step="update_subscription"
    )
    # localstripe's proration: the whole first invoice back as unused time (Stripe's own
    # would be the unused days only), waiting for the next invoice
    pending = localstripe.get("/v1/invoiceitems", customer=after["customer"], limit=100)["data"]
    assert [(item["amount"], item["proration"], item["description"]) for item in pending] == [
        (-90000, True, "Unused time")
    ]
    # the ERP has a return of 5 seats, Tandem a credit note for their unused month
    returned = _erp_record(stripe_rig, "returnauthorizations", f"{amendment.enterprise_id}:return")
    assert returned is not None
    assert [(i["quantity"], i["rate"]) for i in returned["item"]["items"]] == [("5", "36.00")]
    note = CreditNote.objects.get(contract=contract)
    assert note.amount == (_unused_unit_credit(Decimal("36.00")) * 5).quantize(Decimal("0.01"))
    assert list(contract.versions.order_by("number").values_list("number", "state")) == [
        (1, "superseded"), (2, "active"),
    ]  # fmt: skip


def test_a_renewal_at_an_uplifted_price_moves_the_stripe_subscription_to_the_new_price(
    stripe_rig: Rig, localstripe: LocalStripe
):
    # given: a contract whose twelve-month term ended yesterday
    start = add_months(timezone.localdate(), -12)
    contract = _live(stripe_rig, localstripe, SBQQ__StartDate__c=start.isoformat())
    assert contract.end_date == timezone.localdate() - dt.timedelta(days=1)
    before = _subscription(localstripe)
    term_end = add_months(timezone.localdate(), 12) - dt.timedelta(days=1)
    line = {
        "line_no": 1, "product_code": "PLAT-PRO", "description": "Platform Pro seats",
        "kind": "recurring", "quantity": "25", "unit_price": "42.00", "discount_percent": "10",
        "billing_period": "month", "term_start": timezone.localdate().isoformat(),
        "term_end": term_end.isoformat(),
    }  # fmt: skip
    # when: CPQ processed the renewal at 42.00 (37.80 net); finance accepts its sale
    response = stripe_rig.sandbox.post(
        "cpq", f"/contracts/{contract.enterprise_id}/renewals",
        {"term_start": timezone.localdate().isoformat(), "term_end": term_end.isoformat(),
         "lines": [line]},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    reference = f"{contract.enterprise_id}:v2"
    sale = wait_until(
        lambda: _erp_record(stripe_rig, "salesorders", reference), what="the renewal's sale"
    )
    assert _subscription(localstripe)["items"]["data"][0]["plan"]["id"] == SEATS_PLAN
    approved = stripe_rig.sandbox.control("POST", f"/erp/approve/{sale['internalId']}")
    assert approved.status_code == 200, approved.text
    wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="renewal", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the renewal run to complete",
    )
    # then: the same subscription continues, now on the uplifted plan, changed once
    after = _subscription(localstripe)
    assert (after["id"], after["status"]) == (before["id"], "active")
    uplifted = plan_id_for("prod_platpro:GBP:37.80:month")
    assert [(item["plan"]["id"], item["plan"]["amount"], item["quantity"])
            for item in after["items"]["data"]] == [(uplifted, 3780, 25)]  # fmt: skip
    [update] = OutboundCall.objects.filter(system="billing", operation="subscription_update")
    assert update.idempotency_key == step_key(
        subject_id=contract.enterprise_id, subject_version=2, step="update_subscription"
    )
    assert [(line["quantity"], line["rate"]) for line in sale["item"]["items"]] == [("25", "37.80")]
    contract.refresh_from_db()
    assert (contract.state, contract.end_date) == (ContractState.ACTIVE, term_end)
    assert list(contract.versions.order_by("number").values_list("number", "kind", "state")) == [
        (1, "initial", "superseded"), (2, "renewal", "active"),
    ]  # fmt: skip


def test_a_subscription_cancelled_in_stripe_becomes_the_contracts_cancellation(
    stripe_rig: Rig, localstripe: LocalStripe
):
    # given
    start = timezone.localdate().replace(day=1)
    contract = _live(stripe_rig, localstripe, SBQQ__StartDate__c=start.isoformat())
    subscription = _subscription(localstripe)
    # when: someone cancels it in Stripe; Stripe signs and sends customer.subscription.deleted
    response = localstripe.delete(f"/v1/subscriptions/{subscription['id']}")
    assert response["status"] == "canceled"
    run = wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="cancellation", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the cancellation run to complete",
    )
    # then: the event became a cancellation version and its work, credited from today
    event = InboundEvent.objects.get(system="billing", event_type="customer.subscription.deleted")
    assert (event.status, event.canonical_type, event.signature_valid) == (
        "processed", "cancellation.processed", True,
    )  # fmt: skip
    version = contract.versions.get(number=2)
    assert (version.kind, version.cause, version.change_key, version.changes["mode"]) == (
        "cancellation", "event", f"cancellation:{subscription['id']}", "now",
    )  # fmt: skip
    unit = _unused_unit_credit(Decimal("36.00"))
    returned = _erp_record(stripe_rig, "returnauthorizations", f"{contract.enterprise_id}:v2")
    assert returned is not None
    assert [(line["quantity"], line["rate"]) for line in returned["item"]["items"]] == [
        ("25", f"{unit}")
    ]
    note = CreditNote.objects.get(contract=contract)
    assert note.amount == (unit * 25).quantize(Decimal("0.01"))
    # billing was found cancelled already: nothing sent to Stripe
    assert StepRun.objects.get(run=run, name="cancel_subscription").result["found"] == [True]
    assert not OutboundCall.objects.filter(operation="subscription_cancel").exists()
    contract.refresh_from_db()
    assert contract.state == ContractState.CANCELLED
