"""POST /api/v1/usage/bulk/: a batch of usage records from a metering system, checked on the
server: who may send, how big a batch may be, and a per-record report of what was refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.records import BillingPeriod, LineKind
from q2c import services
from q2c.models import Contract, UsageRecord
from q2c.usage import MAX_RECORDS_PER_REQUEST
from tests import factories
from tests.api.conftest import ADMIN, ANONYMOUS, NO_ROLE, token_client, user_for

pytestmark = pytest.mark.django_db
URL = "/api/v1/usage/bulk/"


def _metered_contract() -> Contract:
    factories.product(sku="API-CALLS", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE)
    usage = factories.line(
        product_code="API-CALLS", kind=LineKind.USAGE, quantity=Decimal("0"),
        unit_price=Decimal("0.01"), billing_period=BillingPeriod.NONE,
    )  # fmt: skip
    contract = factories.contract(lines=[factories.line(), usage])
    return services.contract_activate(contract=contract, actor=factories.actor(), reason="live")


def _record(contract: Contract, usage_id: str, quantity: str = "10", **kw: object) -> dict:
    return {
        "usage_id": usage_id, "contract_id": contract.enterprise_id, "product_code": "API-CALLS",
        "quantity": quantity, "occurred_at": "2026-05-04T08:00:00+02:00", **kw,
    }  # fmt: skip


def test_good_records_land_and_bad_ones_come_back_with_their_reasons():
    # given
    contract = _metered_contract()
    client = token_client(user_for("integration_support"))
    records = [
        _record(contract, "m-1", "100"),
        _record(contract, "m-2", 3.5),
        _record(contract, "m-3", "1", contract_id="CTR-000999"),
        "not a record",
        _record(contract, "m-1", "100"),
        _record(contract, "m-4", "250.25"),
    ]
    # when
    response = client.post(URL, {"source_system": "metering", "records": records}, format="json")
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {
        "received": 6, "created": 2, "duplicates": 1, "rejected": 3,
        "rejections": [
            {"index": 1, "usage_id": "m-2",
             "reason": 'quantity must be a decimal string, e.g. "12.5"'},
            {"index": 2, "usage_id": "m-3", "reason": "unknown contract CTR-000999"},
            {"index": 3, "usage_id": "", "reason": "a record is a JSON object"},
        ],
    }  # fmt: skip
    stored = UsageRecord.history.order_by("source_event_id").values_list(  # type: ignore[attr-defined]
        "source_event_id", "quantity", "amount", "history_user__username"
    )
    assert list(stored) == [
        ("m-1", Decimal("100"), Decimal("1.00"), "user-integration_support"),
        ("m-4", Decimal("250.25"), Decimal("2.5025"), "user-integration_support"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source_system": "metering", "records": []}, "records"),
        ({"source_system": "metering", "records": {"usage_id": "x"}}, "records"),
        ({"source_system": "Metering System", "records": [{}]}, "source_system"),
        ({"records": [{}]}, "source_system"),
        ([{"usage_id": "x"}], "detail"),
    ],
)
def test_a_body_that_is_not_a_batch_is_a_400_and_stores_nothing(body, field):
    # given
    client = token_client(user_for("integration_support"))
    # when
    response = client.post(URL, body, format="json")
    # then
    assert response.status_code == 400
    assert field in response.json()
    assert UsageRecord.objects.count() == 0


def test_a_batch_over_the_limit_is_refused_whole():
    # given
    contract = _metered_contract()
    client = token_client(user_for("integration_support"))
    records = [_record(contract, f"m-{n}") for n in range(MAX_RECORDS_PER_REQUEST + 1)]
    # when
    response = client.post(URL, {"source_system": "metering", "records": records}, format="json")
    # then
    assert response.status_code == 400
    limit = f"at most {MAX_RECORDS_PER_REQUEST} records per request"
    assert response.json() == {"records": [limit]}
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("who", "status"),
    [
        (ANONYMOUS, 401), (NO_ROLE, 403), ("auditor", 403), ("finance_ops", 403),
        ("sales_ops", 403), ("data_steward", 403), ("integration_support", 200), (ADMIN, 200),
    ],
)  # fmt: skip
def test_only_roles_that_send_usage_may_post(who, status):
    # given
    contract = _metered_contract()
    client = token_client(user_for(who))
    # when
    response = client.post(
        URL, {"source_system": "metering", "records": [_record(contract, "m-1")]}, format="json"
    )
    # then
    assert response.status_code == status
    assert UsageRecord.objects.count() == (1 if status == 200 else 0)
