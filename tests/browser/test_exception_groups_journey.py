"""The grouped exception queue with several groups, in a real browser: each group shows its
newest message, and a whole group is assigned behind the confirmation page.

It runs on the suite's backends and, through ``test_demo_backends.py``, on the demo's (SQLite and
the filesystem broker), where the grouped view once answered 500 as soon as there were two groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.problems import Category
from exceptions.models import OperationalException
from orchestration.workflows import engine
from tests.browser.conftest import browser_login
from tests.exceptions.helpers import FLOW, KIND, planned, raise_exception

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    engine.workflow_register(FLOW)
    planned.clear()
    yield
    planned.clear()
    engine.REGISTRY.pop(KIND, None)


def test_support_reads_two_groups_and_assigns_one_whole_group(
    live_server: Any, page: Any, make_user: Any
) -> None:
    # given: three identical master-data errors and one billing error
    same = [raise_exception(message=f"customer {n} rejected") for n in range(3)]
    other = raise_exception(
        step="create_subscription", category=Category.DOWNSTREAM_API, error_class="HTTP500",
        message="billing answered 500",
    )  # fmt: skip
    ivan = make_user("ivan", role="integration_support")
    browser_login(page, live_server.url, "ivan", "pw")
    # when
    page.goto(f"{live_server.url}/exceptions/?view=grouped")
    # then: one row per group, each with its newest message
    rows = page.locator("#rows table.grouped tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-fingerprint") == same[0].fingerprint
    assert rows.nth(1).get_attribute("data-fingerprint") == other.fingerprint
    assert "customer 2 rejected" in rows.nth(0).inner_text()
    assert "billing answered 500" in rows.nth(1).inner_text()
    # when: the first whole group is assigned to ivan
    rows.nth(0).locator("button[data-bulk=assign]").click()
    page.wait_for_url("**/exceptions/bulk/")
    assert "3 exceptions (a whole group)" in page.locator("h1").inner_text()
    page.get_by_label("Reason").fill("taking the tax-id rejections")
    page.get_by_role("button", name="Confirm: assign 3").click()
    # then
    page.wait_for_selector("table.report")
    assert ": 3 done, 0 failed" in page.locator("h1").inner_text()
    assigned = dict(OperationalException.objects.values_list("pk", "assignee_id"))
    assert assigned == {**{exc.pk: ivan.pk for exc in same}, other.pk: None}
