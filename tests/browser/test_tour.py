"""A tour of the console's main pages as an admin, each checked for its main content and
saved as a screenshot (``make screenshots`` writes them to docs/screenshots for the README).
The deal comes from the sandbox and a real worker: billing refused its subscription, so the
order is held behind an open exception and a replay awaits approval."""

from __future__ import annotations

from typing import Any

import pytest

from core.audit import Actor
from exceptions import services as exc_services
from exceptions.models import OperationalException, ReplayKind
from masterdata.models import DuplicateCandidate
from masterdata.services import duplicates as md
from orchestration.workflows.models import WorkflowRun
from q2c.models import Order
from tests.browser.conftest import browser_login
from tests.integration.q2c_env import Rig
from tests.integration.test_replays import billing_refuses_the_subscription
from tests.masterdata import helpers

pytestmark = pytest.mark.integration


def test_a_tour_of_the_main_pages_with_screenshots(
    rig: Rig, live_server: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given: a held deal with its exception and a replay awaiting approval, two spellings of
    # one company with their own orders, and the duplicate detection run over them
    order, exception = billing_refuses_the_subscription(rig)
    sam = Actor.person(make_user("sam", role="sales_ops"))
    run = WorkflowRun.objects.get(subject_id=order.enterprise_id)
    replay = exc_services.replay_request(
        kind=ReplayKind.WORKFLOW, workflow_run=run, actor=sam, reason="billing plan remapped"
    )
    world = helpers.world()
    md.duplicates_detect(actor=Actor.system("scheduler"))
    pair = DuplicateCandidate.objects.get(
        account_a_id=min(world.survivor.pk, world.loser.pk),
        account_b_id=max(world.survivor.pk, world.loser.pk),
    )
    make_user("ada", is_superuser=True, is_staff=True)
    base = live_server.url
    browser_login(page, base, "ada", "pw")

    # when / then: the dashboard
    page.goto(f"{base}/dashboard/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.get_by_role("heading", name="Open exceptions by owner team and age").count() == 1
    screenshot(page, "dashboard")

    # the orders list: every order, the held one among them
    page.goto(f"{base}/orders/")
    assert page.locator("h1").inner_text() == "Orders"
    assert page.locator("#rows tbody tr").count() == Order.objects.count() == 3
    assert "On hold" in page.locator("#rows tbody tr", has_text=order.enterprise_id).inner_text()
    screenshot(page, "orders")

    # the held order's timeline, down to the failed step
    page.goto(f"{base}/orders/{order.enterprise_id}/timeline/")
    assert page.locator("h1").inner_text().startswith(order.enterprise_id)
    assert page.get_by_role("heading", name="Workflow steps").count() == 1
    assert "create_subscription" in page.content()
    screenshot(page, "timeline")

    # the exception queue, grouped: one group of one
    page.goto(f"{base}/exceptions/?view=grouped")
    assert page.locator("h1").inner_text() == "Exceptions"
    groups = page.locator("#rows table.grouped tbody tr")
    assert groups.count() == 1
    assert groups.first.get_attribute("data-fingerprint") == exception.fingerprint
    screenshot(page, "exceptions-grouped", full_page=True)

    # the exception itself
    page.goto(f"{base}/exceptions/{exception.pk}/")
    assert page.locator("h1").inner_text().startswith(f"EXC-{exception.pk}")
    assert page.get_by_role("heading", name="Suggested next steps").count() == 1
    assert OperationalException.objects.get(pk=exception.pk).step == "create_subscription"
    screenshot(page, "exception-detail")

    # the replay awaiting approval, with its dry-run preview
    page.goto(f"{base}/replays/{replay.pk}/")
    assert page.locator("h1").inner_text().startswith(f"RPL-{replay.pk}")
    assert "create_subscription" in page.content()
    screenshot(page, "replay-detail")

    # the audit browser, filtered to the order
    page.goto(f"{base}/audit/?model=q2c.order&record={order.enterprise_id}")
    assert page.locator("h1").inner_text() == "Audit trail"
    audit_rows = page.locator("#rows table.audit tbody tr")
    assert audit_rows.count() == order.history.count() > 1
    assert all(order.enterprise_id in text for text in audit_rows.all_inner_texts())
    screenshot(page, "audit")

    # the duplicate queue and the merge preview of the detected pair
    page.goto(f"{base}/duplicates/")
    assert page.locator("h1").inner_text() == "Duplicate candidates"
    assert page.locator("#rows tbody tr").count() == DuplicateCandidate.objects.count() >= 1
    assert page.get_by_role("link", name=f"DUP-{pair.pk}").count() == 1
    screenshot(page, "duplicates", full_page=True)
    page.get_by_role("link", name=f"DUP-{pair.pk}").click()
    page.locator("a", has_text=f"Merge {pair.account_b.enterprise_id} into").click()
    page.wait_for_url("**/merges/new/**")
    assert page.locator("h1").inner_text() == (
        f"Merge {pair.account_b.enterprise_id} into {pair.account_a.enterprise_id}"
    )
    assert page.get_by_role("heading", name="Which value survives").count() == 1
    assert page.locator("table.survivorship tbody tr").count() > 1
    screenshot(page, "merge-preview")
