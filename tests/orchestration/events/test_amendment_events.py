"""amendment.processed from CPQ: an amendment order for an active contract and its workflow,
once per amendment; what cannot be amended is refused with the reason, and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration.events.catalog import SCHEMA_DIR
from orchestration.events.errors import EventNotReady
from orchestration.events.services import inbound_event_receive
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent
from orchestration.tasks import process_inbound_event
from orchestration.workflows.models import WorkflowRun
from q2c import services
from q2c.models import Contract, Order
from tests import factories

pytestmark = pytest.mark.django_db


def _amendment(contract_id: str, event_id: str = "evt_amend_1", **data: str) -> dict:
    schema = json.loads(Path(SCHEMA_DIR, "amendment.processed", "v1.json").read_text())
    payload = json.loads(json.dumps(schema["examples"][0]))
    payload["event_id"] = event_id
    payload["data"].update({"contract_id": contract_id, **data})
    return payload


def _received(payload: dict, secret: str) -> InboundEvent:
    body = json.dumps(payload).encode()
    receipt = inbound_event_receive(
        system="cpq",
        raw_body=body,
        headers={"X-Tandem-Signature": signature_header(secret=secret, body=body)},
        now=time.time(),
    )
    assert receipt.http_status == 202
    return receipt.event


def _active_contract() -> Contract:
    contract = factories.contract()
    return services.contract_activate(
        contract=contract, actor=factories.actor(), reason="test setup"
    )


def test_an_amendment_makes_one_amendment_order_and_starts_its_workflow(webhook_secrets):
    # given
    contract = _active_contract()
    first = _received(_amendment(contract.enterprise_id), webhook_secrets["current"])
    again = _received(
        _amendment(contract.enterprise_id, event_id="evt_amend_1_resent"),
        webhook_secrets["current"],
    )
    # when
    process_inbound_event(first.pk)
    process_inbound_event(again.pk)
    # then
    order = Order.objects.get(amends=contract)
    assert (order.state, order.account, order.effective_date) == (
        "received", contract.account, dt.date(2026, 4, 1),
    )  # fmt: skip
    assert order.quote is not None and order.quote.cpq_quote_id == "a0x5e000002AmEnDAF"
    assert [
        (line.product_code, line.quantity, line.unit_price, line.discount_percent)
        for line in order.lines.all()
    ] == [("PLAT-PRO", Decimal("35.0000"), Decimal("40.0000"), Decimal("10.00"))]
    run = WorkflowRun.objects.get(subject_id=order.enterprise_id)
    assert (run.kind, run.order, run.steps.get(position=0).state) == (
        "amendment", order, "queued",
    )  # fmt: skip
    first.refresh_from_db()
    again.refresh_from_db()
    assert (first.status, first.correlation_id) == ("processed", order.enterprise_id)
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed",
        f"amendment a0x5e000002AmEnDAF was already received as {order.quote.enterprise_id}",
    )


def test_an_amendment_of_an_unknown_contract_is_rejected_and_changes_nothing(webhook_secrets):
    # given
    event = _received(_amendment("CTR-999999"), webhook_secrets["current"])
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == ("rejected", "unknown contract CTR-999999")
    assert Order.objects.count() == 0
    assert WorkflowRun.objects.count() == 0


def test_an_amendment_outside_the_term_is_rejected_and_changes_nothing(webhook_secrets):
    # given
    contract = _active_contract()
    payload = _amendment(contract.enterprise_id, effective_date="2027-02-01")
    event = _received(payload, webhook_secrets["current"])
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == (
        "rejected", "an amendment takes effect within the contract term",
    )  # fmt: skip
    assert Order.objects.count() == 0
    assert WorkflowRun.objects.count() == 0


def test_an_amendment_of_a_contract_not_yet_active_waits_and_changes_nothing(webhook_secrets):
    # given
    contract = factories.contract()  # pending activation: its order is still going live
    event = _received(_amendment(contract.enterprise_id), webhook_secrets["current"])
    # when
    with pytest.raises(EventNotReady):
        process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == ("received", "")
    assert Order.objects.count() == 0
