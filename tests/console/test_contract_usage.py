"""The contract page's usage section: per period, the rated amount and what billing has."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from core.records import BillingPeriod, LineKind
from q2c import services
from q2c.models import Contract
from q2c.usage import usage_records_ingest, usage_row_parse
from tests import factories
from tests.console.helpers import sign_in

pytestmark = pytest.mark.django_db


def _contract_with_usage() -> Contract:
    factories.product(sku="API-CALLS", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE)
    usage = factories.line(
        product_code="API-CALLS", kind=LineKind.USAGE, quantity=Decimal("0"),
        unit_price=Decimal("0.05"), billing_period=BillingPeriod.NONE,
    )  # fmt: skip
    contract = factories.contract(lines=[factories.line(), usage])
    services.contract_activate(contract=contract, actor=factories.actor(), reason="live")
    rows = [
        usage_row_parse({"usage_id": f"u-{n}", "contract_id": contract.enterprise_id,
                         "product_code": "API-CALLS", "quantity": "1000",
                         "occurred_at": f"2026-0{n}-10T00:00:00Z"})
        for n in (3, 4)
    ]  # fmt: skip
    usage_records_ingest(
        source_system="metering", rows=rows, actor=factories.actor(), reason="metering"
    )
    return contract


def test_finance_sees_usage_per_period_with_rated_amount_and_report_state(client):
    # given
    contract = _contract_with_usage()
    sign_in(client, "finance_ops")
    # when
    response = client.get(reverse("contract-timeline", args=[contract.enterprise_id]))
    # then
    assert response.status_code == 200
    rows = [
        (r.period_start.isoformat(), r.product.sku, str(r.rated), str(r.reported), r.state)
        for r in response.context["usage_reports"]
    ]
    assert rows == [
        ("2026-04-01", "API-CALLS", "50.00 GBP", "0.00 GBP", "pending"),
        ("2026-03-01", "API-CALLS", "50.00 GBP", "0.00 GBP", "pending"),
    ]
    html = response.content.decode()
    assert '<h2 id="usage">Usage</h2>' in html
    assert "<td>2026-04</td>" in html and "To report" in html


def test_a_role_without_usage_permission_sees_no_usage_section(client):
    # given
    contract = _contract_with_usage()
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("contract-timeline", args=[contract.enterprise_id]))
    # then
    assert response.status_code == 200
    assert response.context["usage_reports"] is None
    assert '<h2 id="usage">' not in response.content.decode()
