"""Quote to cash against the sandbox ERP and billing, run in-process: the ERP sales order is
booked in the order's legal entity (a customer's second order through another entity books in
that one), and the contract is activated only once billing says the subscription is active."""

from __future__ import annotations

from typing import Any

import pytest

from core.audit import Actor
from masterdata.models import Account, LegalEntity
from masterdata.services import records as md_services
from orchestration.workflows import engine
from orchestration.workflows.models import RunState, StepRun, StepState, WorkflowRun
from q2c.models import ContractState, Order, OrderState
from tests import factories
from tests.sandbox.helpers import SandboxClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def _entity(code: str, subsidiary: str) -> LegalEntity:
    return factories.legal_entity(
        code=code, erp_subsidiary=subsidiary, tax_registration=f"GB{subsidiary}99999973"
    )


def _order(account: Account, entity: LegalEntity) -> Order:
    product = factories.product(sku=f"SKU-{entity.code}")
    for system in ("erp", "billing"):
        md_services.product_map(
            product=product, system=system, external_id=f"{system}-{product.sku}",
            actor=Actor.system("worker"), reason="test setup",
        )  # fmt: skip
    line = factories.line(product_code=product.sku, product=product)
    return factories.order(account=account, legal_entity=entity, lines=[line])


def _drain(run: WorkflowRun) -> None:
    while True:
        step = StepRun.objects.filter(run=run, state=StepState.QUEUED).order_by("position").first()
        if step is None:
            return
        engine.step_execute(step_id=step.pk)


def _started(order: Order) -> WorkflowRun:
    run = engine.workflow_start(
        kind="quote_to_cash", subject_id=order.enterprise_id, order=order, actor=factories.actor()
    )
    _drain(run)
    return WorkflowRun.objects.get(pk=run.pk)


def _accepted(sandbox: SandboxClient, run: WorkflowRun) -> None:
    """Finance approves the sales order in the ERP; its acceptance reaches the run."""
    sales_order = _sales_orders(sandbox)[run.subject_id]
    response = sandbox.control("POST", f"/erp/approve/{sales_order['internalId']}")
    assert response.status_code == 200, response.text
    engine.workflow_signal(run=run, event_type="order.accepted", payload=response.json())
    _drain(run)


def _sales_orders(sandbox: SandboxClient) -> dict[str, Any]:
    return {order["externalId"]: order for order in sandbox.state("erp")["records"]["salesorders"]}


def test_a_second_order_through_another_entity_is_booked_in_that_entity(sandbox):
    # given
    uk, ie = _entity("UK01", "2"), _entity("IE01", "3")
    account = factories.account(legal_entity=uk)
    first, second = _order(account, uk), _order(account, ie)
    # when
    runs = [_started(first), _started(second)]
    # then
    assert [run.state for run in runs] == [RunState.WAITING, RunState.WAITING]
    booked = _sales_orders(sandbox)
    assert {reference: order["subsidiary"] for reference, order in booked.items()} == {
        first.enterprise_id: {"id": "2"},
        second.enterprise_id: {"id": "3"},
    }
    assert booked[first.enterprise_id]["entity"] == booked[second.enterprise_id]["entity"]
    assert len(sandbox.state("erp")["records"]["customers"]) == 1


def test_the_contract_waits_for_billing_to_say_the_subscription_is_active(sandbox):
    # given
    entity = _entity("UK01", "2")
    order = _order(factories.account(legal_entity=entity), entity)
    run = _started(order)
    _accepted(sandbox, run)
    waiting = StepRun.objects.get(run=run, name="activate_contract")
    contract = order.contracts.get()
    before = (waiting.state, contract.state, Order.objects.get(pk=order.pk).state)
    # when
    engine.workflow_signal(
        run=run,
        event_type="subscription.activated",
        payload={"contract_id": contract.enterprise_id},
    )
    _drain(run)
    # then
    assert before == (StepState.WAITING, ContractState.PENDING_ACTIVATION, OrderState.PROVISIONING)
    contract.refresh_from_db()
    run.refresh_from_db()
    assert contract.state == ContractState.ACTIVE
    assert Order.objects.get(pk=order.pk).state == OrderState.ACTIVE
    assert run.state == RunState.COMPLETED


def test_an_order_without_a_subscription_does_not_wait_for_billing(sandbox):
    # given
    entity = _entity("UK01", "2")
    product = factories.product(sku="SETUP", kind="one_time", billing_period="")
    md_services.product_map(product=product, system="erp", external_id="erp-SETUP",
                            actor=Actor.system("worker"), reason="test setup")  # fmt: skip
    line = factories.line(product_code="SETUP", product=product, kind="one_time",
                          billing_period="", term_start=None, term_end=None)  # fmt: skip
    order = factories.order(account=factories.account(legal_entity=entity), lines=[line])
    run = _started(order)
    # when
    _accepted(sandbox, run)
    # then
    run.refresh_from_db()
    assert run.state == RunState.COMPLETED
    assert Order.objects.get(pk=order.pk).state == OrderState.ACTIVE
    assert sandbox.state("billing")["counts"]["subscriptions"] == 0
