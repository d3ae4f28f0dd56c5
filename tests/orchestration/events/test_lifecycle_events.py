"""renewal.processed and cancellation.processed from CPQ, and amendments naming their base:
each records one contract version and starts its workflow once; a stale change is parked
with an exception and sends nothing; what cannot be applied is refused and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from exceptions.models import OperationalException
from orchestration.events.catalog import SCHEMA_DIR
from orchestration.events.services import inbound_event_receive
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent
from orchestration.tasks import process_inbound_event
from orchestration.workflows import lifecycle as changes
from orchestration.workflows.models import StepRun, WorkflowRun, WorkflowSignal
from q2c import lifecycle, services
from q2c.models import Contract, Order
from tests import factories

pytestmark = pytest.mark.django_db


def _event(event_type: str, contract_id: str, event_id: str, **data: Any) -> dict[str, Any]:
    schema = json.loads(Path(SCHEMA_DIR, event_type, "v1.json").read_text())
    payload = json.loads(json.dumps(schema["examples"][0]))
    payload["event_id"] = event_id
    payload["data"].update({"contract_id": contract_id, **data})
    return payload


def _process(payload: dict[str, Any], secret: str) -> InboundEvent:
    body = json.dumps(payload).encode()
    receipt = inbound_event_receive(
        system="cpq",
        raw_body=body,
        headers={"X-Tandem-Signature": signature_header(secret=secret, body=body)},
        now=time.time(),
    )
    assert receipt.http_status == 202
    process_inbound_event(receipt.event.pk)
    receipt.event.refresh_from_db()
    return receipt.event


def _active() -> Contract:
    contract = factories.contract()
    services.contract_activate(contract=contract, actor=factories.actor(), reason="test setup")
    contract.refresh_from_db()
    return contract


def _versions(contract: Contract) -> list[tuple[int, str, str]]:
    return list(contract.versions.order_by("number").values_list("number", "kind", "state"))


def test_a_cancellation_is_one_version_and_one_workflow_however_often_it_arrives(
    webhook_secrets,
):
    # given
    contract = _active()
    payload = _event("cancellation.processed", contract.enterprise_id, "evt_cx_1",
                     effective_date="2026-06-15", mode="now")  # fmt: skip
    # when
    first = _process(payload, webhook_secrets["current"])
    again = _process({**payload, "event_id": "evt_cx_1_resent"}, webhook_secrets["current"])
    # then
    assert _versions(contract) == [(1, "initial", "active"), (2, "cancellation", "pending")]
    version = contract.versions.get(number=2)
    # 10 x 25.00 monthly, 16 of June's 30 days left
    assert (version.changes["mode"], version.changes["credit_total"]) == ("now", "133.30")
    assert (first.status, first.correlation_id) == ("processed", contract.enterprise_id)
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed", "cancellation cx_0001 was already received",
    )  # fmt: skip
    run = WorkflowRun.objects.get(kind="cancellation")
    assert (run.subject_id, run.subject_version) == (contract.enterprise_id, 2)


def test_a_cancellation_on_the_last_day_is_at_term_end_with_nothing_credited(webhook_secrets):
    contract = _active()
    payload = _event("cancellation.processed", contract.enterprise_id, "evt_cx_2",
                     effective_date="2026-12-31")  # fmt: skip
    _process(payload, webhook_secrets["current"])
    version = contract.versions.get(number=2)
    assert (version.changes["mode"], version.changes["credit_total"], version.effective_date) == (
        "term_end", "0.00", dt.date(2026, 12, 31),
    )  # fmt: skip


def test_a_quoted_renewal_is_a_renewal_version_and_its_workflow(webhook_secrets):
    # given
    contract = _active()
    payload = _event("renewal.processed", contract.enterprise_id, "evt_rn_1")
    # when
    event = _process(payload, webhook_secrets["current"])
    # then
    contract.refresh_from_db()
    assert event.status == "processed"
    assert (contract.state, contract.end_date) == ("renewed", dt.date(2027, 12, 31))
    assert _versions(contract)[-1] == (2, "renewal", "pending")
    assert WorkflowRun.objects.get(kind="renewal").subject_version == 2


def test_a_stale_amendment_is_parked_with_an_exception_and_nothing_is_started(webhook_secrets):
    # given: v2 is already pending on v1
    contract = _active()
    first = _event("amendment.processed", contract.enterprise_id, "evt_amd_1",
                   amendment_id="amd-1", cpq_quote_id="amd-1", base_version=1)  # fmt: skip
    _process(first, webhook_secrets["current"])
    # when: another amendment still names v1
    stale = _event("amendment.processed", contract.enterprise_id, "evt_amd_2",
                   amendment_id="amd-2", cpq_quote_id="amd-2", base_version=1)  # fmt: skip
    event = _process(stale, webhook_secrets["current"])
    # then
    assert event.status == "processed"
    assert _versions(contract) == [
        (1, "initial", "active"), (2, "amendment", "pending"), (3, "amendment", "parked"),
    ]  # fmt: skip
    parked_order = Order.objects.get(quote__cpq_quote_id="amd-2")
    assert parked_order.state == "cancelled"
    assert not WorkflowRun.objects.filter(subject_id=parked_order.enterprise_id).exists()
    assert OperationalException.objects.filter(error_class="StaleContractChange").count() == 1


def test_a_change_of_an_unknown_contract_is_rejected_and_changes_nothing(webhook_secrets):
    event = _process(
        _event("cancellation.processed", "CTR-999999", "evt_cx_9"), webhook_secrets["current"]
    )
    assert (event.status, event.rejection_reason) == ("rejected", "unknown contract CTR-999999")
    assert WorkflowRun.objects.count() == 0


def test_a_future_dated_change_is_told_only_when_its_date_has_come(webhook_secrets):
    # given
    contract = _active()
    _process(
        _event("cancellation.processed", contract.enterprise_id, "evt_cx_3",
               effective_date="2026-09-01", mode="now"),
        webhook_secrets["current"],
    )  # fmt: skip
    run = WorkflowRun.objects.get(kind="cancellation")
    # when / then
    assert changes.versions_signal_due(today=dt.date(2026, 8, 31)) == 0
    assert not WorkflowSignal.objects.filter(run=run).exists()
    assert changes.versions_signal_due(today=dt.date(2026, 9, 1)) == 1
    assert changes.versions_signal_due(today=dt.date(2026, 9, 2)) == 0  # told once
    signal = WorkflowSignal.objects.get(run=run)
    assert (signal.event_type, signal.payload) == (
        "contract.version_due", {"version": 2, "due": "2026-09-01"},
    )  # fmt: skip
    assert StepRun.objects.get(run=run, name="await_effective_date").waiting_for == (
        "contract.version_due"
    )


def test_auto_renewal_at_term_end_starts_one_renewal_workflow():
    # given
    contract = _active()
    lifecycle.contract_renewal_terms_set(
        contract=contract, auto_renew=True, actor=factories.actor(), reason="auto-renews"
    )
    # when
    started = changes.contracts_auto_renew(today=dt.date(2026, 12, 31))
    again = changes.contracts_auto_renew(today=dt.date(2026, 12, 31))
    # then
    assert (started, again) == (1, 0)
    run = WorkflowRun.objects.get(kind="renewal")
    assert (run.subject_id, run.subject_version) == (contract.enterprise_id, 2)
