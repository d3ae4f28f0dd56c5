"""A corrected address or tax id in Tandem reaches the ERP's and billing's customers, once
per change, through the engine against the sandbox: a lost answer is sent again and changes
nothing more; the same values again start nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from core.audit import Actor
from masterdata.models import Account
from masterdata.services import records as md_services
from orchestration.connectors.interfaces import Party
from orchestration.connectors.sandbox.billing import SandboxBilling
from orchestration.connectors.sandbox.erp import SandboxErp
from orchestration.workflows import engine
from orchestration.workflows.models import RunState, StepRun, StepState, WorkflowRun
from tests import factories
from tests.orchestration.connectors.helpers import faults_off, responses_lost
from tests.sandbox.helpers import SandboxClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def _customer_downstream() -> Account:
    """An account whose customer exists in the ERP and in billing, linked in the crosswalk."""
    entity = factories.legal_entity(erp_subsidiary="2")
    account = factories.account(
        legal_entity=entity, tax_id="GB123456789", address_line1="1 Old Road", city="Leeds",
        postcode="LS1 1AA",
    )  # fmt: skip
    party = Party(
        reference=account.enterprise_id, name=account.legal_name, country="GB", currency="GBP",
        tax_id=account.tax_id, address_line1=account.address_line1, city=account.city,
        postcode=account.postcode, erp_subsidiary="2",
    )  # fmt: skip
    for system, connector in (("erp", SandboxErp()), ("billing", SandboxBilling())):
        created = connector.customer_create(party=party, idempotency_key=f"setup:{system}")
        md_services.external_id_link(
            record=account, system=system, object_type="customer", external_id=created.id,
            actor=Actor.system("worker"), reason="test setup",
        )  # fmt: skip
    return account


def _drain(run: WorkflowRun) -> WorkflowRun:
    while True:
        step = StepRun.objects.filter(run=run, state=StepState.QUEUED).order_by("position").first()
        if step is None:
            return WorkflowRun.objects.get(pk=run.pk)
        engine.step_execute(step_id=step.pk)


def _downstream(sandbox: SandboxClient) -> tuple[dict[str, Any], dict[str, Any]]:
    [erp] = sandbox.state("erp")["records"]["customers"]
    [billing] = sandbox.state("billing")["records"]["customers"]
    return erp, billing


def _move(account: Account) -> Account:
    return md_services.account_update_address(
        account=account, address_line1="2 New Street", city="York", postcode="YO1 7HH",
        country="GB", actor=Actor.system("worker"), reason="customer moved",
    )  # fmt: skip


def test_a_new_address_and_tax_id_reach_the_erp_and_billing_customers(sandbox):
    # given
    account = _customer_downstream()
    # when
    _move(account)
    _move(account)  # the same address again: no change, no run
    md_services.account_update_tax_id(
        account=account,
        tax_id="GB987654321",
        actor=Actor.system("worker"),
        reason="tax id corrected",
    )
    runs = [
        _drain(run) for run in WorkflowRun.objects.filter(kind="customer_update").order_by("pk")
    ]
    # then
    assert [run.state for run in runs] == [RunState.COMPLETED, RunState.COMPLETED]
    assert len({run.subject_version for run in runs}) == 2
    erp, billing = _downstream(sandbox)
    assert (erp["billAddress"]["addr1"], erp["billAddress"]["city"], erp["vatRegNumber"]) == (
        "2 New Street", "York", "GB987654321",
    )  # fmt: skip
    assert erp["subsidiary"] == {"id": "2"}
    assert (billing["address"]["line1"], billing["address"]["postal_code"]) == (
        "2 New Street", "YO1 7HH",
    )  # fmt: skip
    assert billing["metadata"] == {"tandem_account": account.enterprise_id, "tax_id": "GB987654321"}


def test_an_update_whose_answer_was_lost_is_sent_again_and_changes_nothing_more(sandbox):
    # given
    account = _customer_downstream()
    responses_lost(sandbox, "erp")
    _move(account)
    run = WorkflowRun.objects.get(kind="customer_update")
    _drain(run)
    step = StepRun.objects.get(run=run, name="update_erp_customer")
    lost = step.state
    # when
    faults_off(sandbox, "erp")
    StepRun.objects.filter(pk=step.pk).update(next_attempt_at=timezone.now())
    engine.step_execute(step_id=step.pk)
    run = _drain(run)
    # then
    assert lost == StepState.RETRY_SCHEDULED
    assert run.state == RunState.COMPLETED
    erp, billing = _downstream(sandbox)
    assert (erp["billAddress"]["city"], billing["address"]["city"]) == ("York", "York")


def test_an_account_with_no_downstream_customer_is_skipped_visibly(sandbox):
    # given
    account = factories.account()
    # when
    _move(account)
    run = _drain(WorkflowRun.objects.get(kind="customer_update"))
    # then
    assert run.state == RunState.COMPLETED
    results = dict(run.steps.values_list("name", "result"))
    assert results["update_erp_customer"] == {
        "skipped": f"{account.enterprise_id} has no erp customer yet"
    }
    assert sandbox.state("erp")["records"]["customers"] == []
