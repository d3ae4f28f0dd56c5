"""The console's main journey in a real browser, against the live server, the sandbox and a
real Celery worker: a sales-ops person finds a stuck order, opens its timeline and requests a
replay; a finance-ops person approves it; the worker replays the run and the order goes live.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.audit import Actor, audit_context
from exceptions.models import Replay
from masterdata.models import ProductMapping
from q2c.models import Order, OrderState
from tests.browser.conftest import browser_login
from tests.integration.q2c_env import Rig, rig_records, wait_until
from tests.integration.test_replays import billing_refuses_the_subscription

pytestmark = pytest.mark.integration


def test_sales_ops_requests_a_replay_finance_ops_approves_it_and_the_order_goes_live(
    rig: Rig, live_server: Any, browser: Any, make_user: Any, screenshot: Any
) -> None:
    # given: billing refused the subscription after the ERP order existed; a steward remapped
    order, _exception = billing_refuses_the_subscription(rig)
    mapping = ProductMapping.objects.get(product__sku="PLAT-PRO", system="billing")
    with audit_context(actor=Actor.system("worker"), reason="billing plan remapped"):
        mapping.external_id = "prod_platpro_2026"
        mapping.save()
    make_user("sam", role="sales_ops")
    make_user("fiona", role="finance_ops")
    base = live_server.url

    # when: sales ops finds the order held on a billing error and opens its timeline
    sam = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    browser_login(sam, base, "sam", "pw")
    sam.goto(f"{base}/orders/")
    sam.get_by_label("Open error on").select_option("billing")
    sam.get_by_role("button", name="Filter").click()
    sam.wait_for_url("**system=billing**")
    rows = sam.locator("#rows tbody tr")
    assert rows.count() == 1
    assert order.enterprise_id in rows.first.inner_text()
    screenshot(sam, "orders-held")
    rows.first.get_by_role("link", name="timeline").click()
    sam.wait_for_url(f"**/orders/{order.enterprise_id}/timeline/")
    assert "create_subscription" in sam.content()
    screenshot(sam, "timeline-held")
    # ... and requests a replay of the whole run, with a reason
    sam.get_by_role("link", name="replay the run").first.click()
    sam.get_by_label("Reason").fill("billing plan remapped by the steward")
    screenshot(sam, "replay-request")
    sam.get_by_role("button", name="Request approval").click()
    sam.wait_for_url("**/replays/*/")
    replay = Replay.objects.get()
    assert replay.requested_by.username == "sam"
    # the requester is not offered the decision on their own request
    assert sam.locator("form[data-action=approve]").count() == 0
    assert "another person with the approval permission must decide" in sam.content()

    # then: finance ops approves it from the replay queue
    fiona = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    browser_login(fiona, base, "fiona", "pw")
    fiona.goto(f"{base}/replays/")
    fiona.get_by_role("link", name=f"RPL-{replay.pk}").click()
    fiona.locator("form[data-action=approve]").get_by_label("Reason").fill("mapping checked")
    fiona.locator("form[data-action=approve]").get_by_role("button", name="Approve").click()
    wait_until(
        lambda: Replay.objects.get(pk=replay.pk).finished_at is not None,
        what="the replay to finish",
    )
    assert Order.objects.get(pk=order.pk).state == OrderState.ACTIVE
    fiona.reload()
    assert "Succeeded" in fiona.locator("h1").inner_text()
    screenshot(fiona, "replay-approved")
    # the order is live, with exactly one record in each downstream system
    sam.goto(f"{base}/orders/{order.enterprise_id}/timeline/")
    assert "Active" in sam.locator("h1").inner_text()
    screenshot(sam, "timeline-active")
    assert len(rig_records(rig, "erp", "salesorders")) == 1
    assert len(rig_records(rig, "billing", "subscriptions")) == 1
