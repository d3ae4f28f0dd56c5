"""The contract's life after the first order, end to end with a real Tryton as the ERP: a
renewal is a new sale for the next term, a cancellation with credit and a downgrade are
returns on the original sale, each booked in the legal entity's Tryton company (the test
catalog's subsidiary ``2``) and made once. The sandbox plays CPQ, CRM, tax, billing and
payments; a real worker runs the workflows; finance's acceptance is a confirmation in
Tryton read back by polling."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.audit import Actor
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.tasks import poll_systems
from orchestration.workflows import lifecycle as changes
from orchestration.workflows.models import RunState, StepRun, WorkflowRun
from q2c.lifecycle import add_months
from q2c.models import Contract, ContractState, CreditNote, Order, OrderState
from tests.integration.q2c_env import Rig, wait_run_completed, wait_until
from tests.integration.test_lifecycle import _unused_unit_credit

pytestmark = pytest.mark.integration

DEMO_COMPANY = 2  # "Tandem Demo Ltd" in the saved database: the test legal entity's company


def live_contract(rig: Rig, *, start: dt.date | None = None) -> tuple[Contract, str]:
    """A contract live through Tryton from ``start`` (this month's first day): the first
    order's sale confirmed by finance in Tryton and read back by polling. Returns the
    contract and the sale's Tryton id."""
    start = start or timezone.localdate().replace(day=1)
    quote = rig.approve_quote(SBQQ__StartDate__c=start.isoformat())
    order = wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=quote["Id"], state=OrderState.SUBMITTED_TO_ERP
        ).first(),
        what="the sale to be submitted to Tryton",
    )
    erp = TrytonErp()
    sale = erp.sales_order_find(reference=order.enterprise_id)
    assert sale is not None
    erp.sales_order_confirm(sales_order_id=sale.id)
    poll_systems.delay()
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, state=OrderState.ACTIVE).first(),
        what="the first order to go live",
    )
    return order.contracts.get(), sale.id


def sales(erp: TrytonErp, reference: str) -> list[dict[str, Any]]:
    """Tryton's sales carrying ``reference``, with their company, origin and lines."""
    rows = erp.search_read(
        "sale.sale", [["reference", "=", reference]],
        ["id", "state", "company", "origin", "total_amount", "lines"], operation="test_read",
    )  # fmt: skip
    for row in rows:
        row["lines"] = [
            ((line.get("product.") or {}).get("code"), line["quantity"], line["unit_price"])
            for line in erp.rpc(
                "test_read", "model.sale.line.read",
                [row["lines"], ["quantity", "unit_price", "product.code"]],
            )
        ]  # fmt: skip
    return rows


def step_done(subject_id: str, step: str) -> Any:
    return wait_until(
        lambda: StepRun.objects.filter(
            run__subject_id=subject_id, name=step, state="succeeded"
        ).first(),
        what=f"{subject_id}'s step {step}",
    )


def test_a_renewal_is_a_new_sale_in_tryton_accepted_by_finance_once(tryton_rig: Rig):
    # given: a contract whose 12-month term ended yesterday, so the renewal starts today
    today = timezone.localdate()
    contract, _ = live_contract(tryton_rig, start=add_months(today, -12))
    assert contract.end_date == today - dt.timedelta(days=1)
    erp = TrytonErp()
    # when: an operator renews; the renewal's sale waits for finance in Tryton
    version = changes.contract_change_submit(
        contract=contract, action=changes.RENEW, payload={}, change_key="renew-1",
        actor=Actor.system("worker"), reason="renewal test",
    )  # fmt: skip
    reference = f"{contract.enterprise_id}:v{version.number}"
    step_done(contract.enterprise_id, "create_erp_order")
    quoted = sales(erp, reference)
    erp.sales_order_confirm(sales_order_id=str(quoted[0]["id"]))
    poll_systems.delay()
    step_done(contract.enterprise_id, "await_financial_acceptance")
    run = wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="renewal", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the renewal run to complete",
    )
    # then: Tryton holds one sale for the new term, in the legal entity's company
    renewed = sales(erp, reference)
    assert len(renewed) == 1
    assert (renewed[0]["state"], renewed[0]["company"], renewed[0]["origin"]) == (
        "processing", DEMO_COMPANY, None,
    )  # fmt: skip
    price = (Decimal("36.00") * (1 + contract.renewal_uplift_percent / 100)).quantize(
        Decimal("0.01")
    )
    assert ("ITEM-PLAT-PRO", 25.0, price) in renewed[0]["lines"]
    version.refresh_from_db()
    assert version.state == "active"
    assert set(run.steps.values_list("state", flat=True)) == {"succeeded"}


def test_a_cancellation_with_credit_is_a_return_on_the_original_sale_in_tryton(
    tryton_rig: Rig,
):
    # given
    contract, original = live_contract(tryton_rig)
    erp = TrytonErp()
    # when: CPQ cancels now, crediting the unused period
    response = tryton_rig.sandbox.post(
        "cpq",
        f"/contracts/{contract.enterprise_id}/cancellations",
        {"effective_date": timezone.localdate().isoformat(), "reason": "customer left",
         "mode": "now"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    wait_until(
        lambda: Contract.objects.filter(pk=contract.pk, state=ContractState.CANCELLED).first(),
        what="the contract to be cancelled",
    )
    run = wait_until(
        lambda: WorkflowRun.objects.filter(
            kind="cancellation", subject_id=contract.enterprise_id, state=RunState.COMPLETED
        ).first(),
        what="the cancellation run to complete",
    )
    # then: one return of the 25 seats' unused period, on the original sale, in its company
    unit = _unused_unit_credit(Decimal("36.00"))
    returns = sales(erp, f"{contract.enterprise_id}:v2")
    assert len(returns) == 1
    assert (returns[0]["company"], returns[0]["origin"], returns[0]["state"]) == (
        DEMO_COMPANY, f"sale.sale,{original}", "quotation",
    )  # fmt: skip
    assert returns[0]["lines"] == [("ITEM-PLAT-PRO", -25.0, unit)]
    assert returns[0]["total_amount"] == -(unit * 25 * Decimal("1.2")).quantize(Decimal("0.01"))
    note = CreditNote.objects.get(contract=contract)
    assert (note.amount, note.currency) == ((unit * 25).quantize(Decimal("0.01")), "GBP")
    assert set(run.steps.values_list("state", flat=True)) == {"succeeded"}


def test_a_downgrade_is_a_return_on_the_original_sale_and_no_new_sale_in_tryton(
    tryton_rig: Rig,
):
    # given
    contract, original = live_contract(tryton_rig)
    erp = TrytonErp()
    today = timezone.localdate()
    line: dict[str, Any] = {
        "product_code": "PLAT-PRO", "description": "Platform Pro seats", "kind": "recurring",
        "quantity": "20", "unit_price": "40.00", "discount_percent": "10",
        "billing_period": "month", "term_start": today.isoformat(),
        "term_end": contract.end_date.isoformat(),
    }  # fmt: skip
    # when: CPQ takes 5 seats away from today
    response = tryton_rig.sandbox.post(
        "cpq",
        f"/contracts/{contract.enterprise_id}/amendments",
        {"effective_date": today.isoformat(), "lines": [line], "base_version": 1},
    )
    assert response.status_code == 201, response.text
    order = wait_until(
        lambda: Order.objects.filter(amends=contract, state=OrderState.ACTIVE).first(),
        what="the downgrade to go live",
    )
    wait_run_completed(order.enterprise_id)
    # then: no sale for the amendment; one return of 5 seats on the original sale
    assert sales(erp, order.enterprise_id) == []
    returns = sales(erp, f"{order.enterprise_id}:return")
    assert len(returns) == 1
    assert (returns[0]["company"], returns[0]["origin"]) == (
        DEMO_COMPANY, f"sale.sale,{original}",
    )  # fmt: skip
    assert returns[0]["lines"] == [("ITEM-PLAT-PRO", -5.0, Decimal("36.00"))]
    versions = list(contract.versions.order_by("number").values_list("number", "state"))
    assert versions == [(1, "superseded"), (2, "active")]
