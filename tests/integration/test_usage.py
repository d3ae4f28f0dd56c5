"""Usage end to end over real HTTP: a quote with a usage line goes live, the metering system
posts usage to the bulk API of the running Tandem, a real worker reports the ended month to
the sandbox billing at a metered price, and a late correction follows as a delta, once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.audit import Actor
from core.records import BillingPeriod, LineKind
from core.tokens import api_token_issue
from masterdata.services import records as md
from q2c.models import Contract, DeliveryState, UsageReport, UsageReportState
from tests.integration.q2c_env import Rig, wait_run_completed, wait_until
from tests.sandbox.helpers import QUOTE_LINES

pytestmark = pytest.mark.integration

USAGE_LINE = {
    "ProductCode": "API-CALLS",
    "SBQQ__ProductName__c": "API calls",
    "SBQQ__ChargeType__c": "Usage",
    "SBQQ__Quantity__c": "1",
    "SBQQ__NetPrice__c": "0.05",
}


def _usage_product() -> None:
    actor = Actor.system("worker")
    product = md.product_create(
        sku="API-CALLS", name="API calls", kind=LineKind.USAGE,
        billing_period=BillingPeriod.NONE, actor=actor, reason="catalog",
    )  # fmt: skip
    for system, external_id in (("erp", "ITEM-API"), ("billing", "prod_api"), ("cpq", "API-CALLS")):
        md.product_map(product=product, system=system, external_id=external_id, actor=actor,
                       reason="catalog")  # fmt: skip


def _token() -> str:
    user = get_user_model().objects.create_user(username="metering", password="pw")
    user.groups.add(Group.objects.get(name="integration_support"))
    return api_token_issue(user=user)


def _post_usage(url: str, token: str, records: list[dict[str, str]]) -> dict[str, Any]:
    response = requests.post(
        f"{url}/api/v1/usage/bulk/",
        json={"source_system": "metering", "records": records},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _billed_usage(rig: Rig) -> list[tuple[str, str]]:
    rows = rig.sandbox.state("billing")["records"]["usage_records"]
    return sorted((row["identifier"], row["quantity"]) for row in rows)


def test_usage_is_rated_reported_by_a_worker_and_corrected_as_a_delta(rig: Rig, live_server):
    # given: a live contract with a usage line at 0.05 GBP per call
    _usage_product()
    rig.approve_quote(lines=[*QUOTE_LINES, USAGE_LINE])
    contract = wait_until(
        lambda: Contract.objects.filter(state="active").first(), what="the contract to go live"
    )
    assert contract.order is not None
    wait_run_completed(contract.order.enterprise_id)
    token = _token()
    march = [
        {"usage_id": f"m-{n}", "contract_id": contract.enterprise_id, "product_code": "API-CALLS",
         "quantity": "500", "occurred_at": f"2026-03-{n:02d}T12:00:00Z"}
        for n in (1, 2, 3)
    ]  # fmt: skip
    # when: March's usage arrives (and is sent twice), then u-1 is corrected to 300
    first = _post_usage(live_server.url, token, march)
    again = _post_usage(live_server.url, token, march)
    report = wait_until(
        lambda: UsageReport.objects.filter(state=UsageReportState.REPORTED).first(),
        what="March to be reported to billing",
    )
    fix = {**march[0], "usage_id": "m-1-fix", "quantity": "300", "corrects": "m-1"}
    corrected = _post_usage(live_server.url, token, [fix])
    wait_until(
        lambda: (
            report.deliveries.filter(state=DeliveryState.SENT).count() == 2
            and UsageReport.objects.get(pk=report.pk).state == UsageReportState.REPORTED
        ),
        what="the correction to be reported",
    )
    # then
    assert (first["created"], again["duplicates"], corrected["created"]) == (3, 3, 1)
    report.refresh_from_db()
    assert (report.quantity, report.amount, report.reported_quantity, report.reported_amount) == (
        Decimal("1300"), Decimal("65"), Decimal("1300"), Decimal("65"),
    )  # fmt: skip
    assert _billed_usage(rig) == [
        (f"usage-{report.pk}-1", "1500"),
        (f"usage-{report.pk}-2", "-200"),
    ]
    assert [line.kind for line in contract.versions.get().lines.order_by("line_no")] == [
        "recurring", "usage",
    ]  # fmt: skip
