"""Day one for finance ops and a data steward in a real browser: the navigation's badge says
a replay waits for finance's decision and leads to it from the home page; the steward's home
lists the master-data exceptions and the duplicate pairs, and says what the role may not do."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from core.audit import Actor
from core.problems import Category
from exceptions import services
from exceptions.models import ReplayKind
from masterdata.models import DuplicateCandidate
from orchestration.workflows import engine
from tests import factories
from tests.browser.conftest import browser_login
from tests.exceptions.helpers import FLOW, KIND, planned, raise_exception

pytestmark = pytest.mark.integration


@pytest.fixture
def test_flow() -> Iterator[None]:
    engine.workflow_register(FLOW)
    planned.clear()
    yield
    planned.clear()
    engine.REGISTRY.pop(KIND, None)


def test_the_badge_leads_finance_to_the_replay_waiting_for_its_decision(
    live_server: Any, page: Any, make_user: Any, screenshot: Any, test_flow: Any
) -> None:
    # given: sales ops asked for a replay of a failed billing step
    exc = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    sam = make_user("sam", role="sales_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exc.step_run, actor=Actor.person(sam),
        reason="billing is back",
    )  # fmt: skip
    make_user("fiona", role="finance_ops")
    base = live_server.url
    # when: finance ops signs in
    browser_login(page, base, "fiona", "pw")
    # then: the navigation says one decision waits, and the home page lists it
    badge = page.locator(".topbar .waiting a.badge")
    expect(badge).to_have_text("1 waiting for you")
    approvals = page.locator("#approvals")
    expect(approvals.locator("h3")).to_have_text("Waiting for my approval (1)")
    screenshot(page, "home-finance")
    # ... and leads to the replay's page, where finance decides
    approvals.get_by_role("link", name=f"RPL-{replay.pk}").click()
    page.wait_for_url(f"**/replays/{replay.pk}/")
    expect(page.locator("form[data-action=approve]")).to_be_visible()


def test_the_stewards_home_lists_the_master_data_queue_and_duplicate_pairs(
    live_server: Any, page: Any, make_user: Any, screenshot: Any, test_flow: Any
) -> None:
    # given: a master-data exception and a duplicate pair
    master = raise_exception(category=Category.MASTER_DATA)
    a, b = sorted((factories.account(), factories.account()), key=lambda x: x.pk)
    pair = DuplicateCandidate.objects.create(
        account_a=a, account_b=b, score=Decimal("0.930"), evidence={}, fingerprint="f" * 64,
        detected_at=timezone.now(),
    )  # fmt: skip
    make_user("stella", role="data_steward")
    base = live_server.url
    # when
    browser_login(page, base, "stella", "pw")
    # then
    expect(
        page.locator("#master-data").get_by_role("link", name=f"EXC-{master.pk}")
    ).to_be_visible()
    expect(page.locator("#duplicates li")).to_have_count(1)
    expect(page.locator("p.scope")).to_contain_text("It may not read orders")
    expect(page.locator(".topbar .waiting a")).to_have_count(0)  # nothing waits for her
    screenshot(page, "home-steward")
    page.locator("#duplicates").get_by_role(
        "link", name=f"{a.enterprise_id} ↔ {b.enterprise_id}"
    ).click()
    page.wait_for_url(f"**/duplicates/{pair.pk}/")
