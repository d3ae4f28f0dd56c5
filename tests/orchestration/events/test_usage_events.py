"""usage.reported from billing: one usage record per usage id, rated on arrival; one that
cannot be rated is rejected with the reason and stores nothing."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from core.records import BillingPeriod, LineKind
from masterdata.services import records as md
from orchestration.events.services import inbound_event_receive
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent
from orchestration.tasks import process_inbound_event
from q2c import services
from q2c.models import Contract, UsageRecord
from tests import factories

pytestmark = pytest.mark.django_db


def _usage(event_id: str, usage_id: str, **data: str) -> dict:
    return {
        "event_id": event_id,
        "event_type": "usage.reported",
        "schema_version": 1,
        "occurred_at": "2026-04-01T00:05:00Z",
        "data": {
            "usage_id": usage_id,
            "product_code": "API-CALLS",
            "quantity": "12500",
            "occurred_at": "2026-03-31T23:59:59Z",
            **data,
        },
    }


def _received(payload: dict) -> InboundEvent:
    body = json.dumps(payload).encode()
    receipt = inbound_event_receive(
        system="billing",
        raw_body=body,
        headers={"X-Tandem-Signature": signature_header(secret="whsec_billing", body=body)},
        now=time.time(),
    )
    assert receipt.http_status == 202
    return receipt.event


def _metered_contract() -> Contract:
    factories.product(sku="API-CALLS", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE)
    usage = factories.line(
        product_code="API-CALLS", kind=LineKind.USAGE, quantity=Decimal("0"),
        unit_price=Decimal("0.002"), billing_period=BillingPeriod.NONE,
    )  # fmt: skip
    contract = factories.contract(lines=[factories.line(), usage])
    return services.contract_activate(contract=contract, actor=factories.actor(), reason="live")


def test_usage_by_subscription_is_rated_once_and_a_redelivery_is_absorbed(webhook_secrets):
    # given: billing names the subscription, not the contract
    contract = _metered_contract()
    md.external_id_link(
        record=contract, system="billing", object_type="subscription", external_id="sub_1QxYz",
        actor=factories.actor(), reason="subscribed",
    )  # fmt: skip
    first = _received(_usage("evt_u_1", "mbur_1", billing_subscription_id="sub_1QxYz"))
    again = _received(_usage("evt_u_1_resent", "mbur_1", billing_subscription_id="sub_1QxYz"))
    # when
    process_inbound_event(first.pk)
    process_inbound_event(again.pk)
    # then
    [record] = UsageRecord.objects.all()
    assert (record.contract, record.source_system, record.quantity, record.amount) == (
        contract, "billing", Decimal("12500"), Decimal("25.0000"),
    )  # fmt: skip
    assert record.history.get().history_change_reason == "usage reported by billing (evt_u_1)"
    first.refresh_from_db()
    again.refresh_from_db()
    assert (first.status, first.correlation_id) == ("processed", contract.enterprise_id)
    assert (again.status, again.rejection_reason) == (
        "duplicate_absorbed", "usage mbur_1 was already received",
    )  # fmt: skip


def test_usage_of_a_product_the_contract_does_not_meter_is_rejected_and_stores_nothing(
    webhook_secrets,
):
    # given
    contract = _metered_contract()
    event = _received(_usage("evt_u_2", "mbur_2", contract_id=contract.enterprise_id,
                             product_code="STORAGE-GB"))  # fmt: skip
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == (
        "rejected",
        f"STORAGE-GB is not a usage line of {contract.enterprise_id} on 2026-03-31",
    )
    assert UsageRecord.objects.count() == 0


def test_usage_of_an_unknown_subscription_is_rejected(webhook_secrets):
    # given
    event = _received(_usage("evt_u_3", "mbur_3", billing_subscription_id="sub_unknown"))
    # when
    process_inbound_event(event.pk)
    # then
    event.refresh_from_db()
    assert (event.status, event.rejection_reason) == (
        "rejected", "unknown billing subscription 'sub_unknown'",
    )  # fmt: skip
    assert UsageRecord.objects.count() == 0
