"""After the first order, end to end over real HTTP: CPQ processes a cancellation or a
decrease of a live contract, its signed webhook reaches Tandem, a real worker runs the
workflow against the sandbox ERP and billing. The ERP gets a return (never a negative
line), billing cancels or downgrades with proration, Tandem issues one credit note and the
contract's new version takes effect, once, however often the event is delivered."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from django.utils import timezone

from orchestration.workflows.models import RunState, WorkflowRun
from q2c.lifecycle import add_months
from q2c.models import Contract, ContractState, CreditNote, Order, OrderState
from tests.integration.q2c_env import Rig, rig_records, wait_run_completed, wait_until

pytestmark = pytest.mark.integration


def _live_contract(rig: Rig) -> Contract:
    today = timezone.localdate()
    quote = rig.approve_quote(SBQQ__StartDate__c=today.replace(day=1).isoformat())
    order = wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=quote["Id"], state=OrderState.ACTIVE
        ).first(),
        what="the first order to go live",
    )
    return order.contracts.get()


def _unused_unit_credit(net: Decimal) -> Decimal:
    """What a unit's unused part of this month is worth from today (monthly billing from the
    1st): the net price times the days left over the month's days."""
    today = timezone.localdate()
    start = today.replace(day=1)
    end = add_months(start, 1)
    return (net * (end - today).days / (end - start).days).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )


def _redeliver_all(rig: Rig, event_type: str) -> None:
    webhooks = rig.sandbox.control("GET", "/webhooks").json()
    for event in webhooks.get("events", []):
        if event.get("event_type") == event_type:
            response = rig.sandbox.control("POST", f"/webhooks/{event['event_id']}/redeliver")
            assert response.status_code == 202, response.text


def test_a_cancellation_now_credits_the_unused_period_in_every_system_once(rig: Rig):
    # given
    contract = _live_contract(rig)
    # when
    response = rig.sandbox.post(
        "cpq",
        f"/contracts/{contract.enterprise_id}/cancellations",
        {"effective_date": timezone.localdate().isoformat(), "reason": "customer left",
         "mode": "now"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    cancelled = wait_until(
        lambda: Contract.objects.filter(pk=contract.pk, state=ContractState.CANCELLED).first(),
        what="the contract to be cancelled",
    )
    _redeliver_all(rig, "cancellation.processed")
    run = wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="cancellation", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the cancellation run to complete",
    )
    # then
    unit = _unused_unit_credit(Decimal("36.00"))
    version = cancelled.versions.get(number=2)
    assert (version.kind, version.state, version.cause, version.base_version.number) == (
        "cancellation", "active", "event", 1,
    )  # fmt: skip
    returns = [
        r for r in rig_records(rig, "erp", "returnauthorizations")
        if r["externalId"] == f"{contract.enterprise_id}:v2"
    ]  # fmt: skip
    assert [
        (line["item"]["externalId"], line["quantity"], line["rate"])
        for line in returns[0]["item"]["items"]
    ] == [("ITEM-PLAT-PRO", "25", f"{unit}")]
    assert len(returns) == 1
    subscription = next(
        s for s in rig_records(rig, "billing", "subscriptions")
        if s["metadata"].get("tandem_contract") == contract.enterprise_id
    )  # fmt: skip
    assert subscription["status"] == "canceled"
    assert subscription["cancellation_details"]["prorate"] is True
    note = CreditNote.objects.get(contract=contract)
    assert (note.state, note.amount, note.currency, note.contract_version) == (
        "issued", (unit * 25).quantize(Decimal("0.01")), "GBP", version,
    )  # fmt: skip
    assert set(run.steps.values_list("state", flat=True)) == {"succeeded"}
    assert WorkflowRun.objects.filter(kind="cancellation").count() == 1


def test_a_decrease_is_an_erp_return_and_a_billing_downgrade_with_a_credit_note(rig: Rig):
    # given
    contract = _live_contract(rig)
    today = timezone.localdate()
    line: dict[str, Any] = {
        "product_code": "PLAT-PRO", "description": "Platform Pro seats", "kind": "recurring",
        "quantity": "20", "unit_price": "40.00", "discount_percent": "10",
        "billing_period": "month", "term_start": today.isoformat(),
        "term_end": contract.end_date.isoformat(),
    }  # fmt: skip
    # when
    response = rig.sandbox.post(
        "cpq",
        f"/contracts/{contract.enterprise_id}/amendments",
        {"effective_date": today.isoformat(), "lines": [line], "base_version": 1},
    )
    assert response.status_code == 201, response.text
    order = wait_until(
        lambda: Order.objects.filter(amends=contract, state=OrderState.ACTIVE).first(),
        what="the amendment to go live",
    )
    wait_run_completed(order.enterprise_id)
    # then: no sale, one return of 5 seats at the net price, never a negative line
    erp_orders = [
        o for o in rig_records(rig, "erp", "salesorders") if o["externalId"] == order.enterprise_id
    ]
    returns = [
        r for r in rig_records(rig, "erp", "returnauthorizations")
        if r["externalId"] == f"{order.enterprise_id}:return"
    ]  # fmt: skip
    assert erp_orders == []
    assert [(i["quantity"], i["rate"]) for i in returns[0]["item"]["items"]] == [("5", "36.00")]
    subscription = next(
        s for s in rig_records(rig, "billing", "subscriptions")
        if s["metadata"].get("tandem_contract") == contract.enterprise_id
    )  # fmt: skip
    assert [item["quantity"] for item in subscription["items"]["data"]] == [20]
    versions = list(contract.versions.order_by("number").values_list("number", "state"))
    assert versions == [(1, "superseded"), (2, "active")]
    note = CreditNote.objects.get(contract=contract)
    assert note.amount == (_unused_unit_credit(Decimal("36.00")) * 5).quantize(Decimal("0.01"))
