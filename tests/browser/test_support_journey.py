"""Integration support's job in a real browser, against the live server, the sandbox and a real
Celery worker: a billing outage leaves several orders failed on the same error, which the
exception queue shows as one group; once billing is back, support bulk-retries the whole group
behind the confirmation, and the report follows the worker until each retried step succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from exceptions.models import ExceptionState, OperationalException
from q2c.models import Order, OrderState
from tests.browser.conftest import browser_login
from tests.integration.conftest import rig_serve
from tests.integration.q2c_env import (
    Rig,
    approve_quotes,
    rig_faults,
    rig_faults_clear,
    rig_records,
    wait_until,
)

pytestmark = pytest.mark.integration

ORDERS = 3
# The breaker stays shut so every order keeps calling billing and fails on billing's own error
# (a 5xx), not on the breaker's: the outage leaves one group of identical errors.
OUTAGE_WORKER_ENV = {"CIRCUIT_FAILURE_THRESHOLD": "1000"}


@pytest.fixture
def outage_rig(
    live_server: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    yield from rig_serve(live_server, start_worker, monkeypatch, worker_env=OUTAGE_WORKER_ENV)


def test_support_bulk_retries_the_group_a_billing_outage_left_and_the_orders_go_live(
    outage_rig: Rig, live_server: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given: billing answers every call with a server error while the quotes come in
    rig = outage_rig
    rig_faults(rig, "billing", error_rate=1.0)
    quote_ids = approve_quotes(rig, ORDERS)
    wait_until(
        lambda: OperationalException.objects.filter(state=ExceptionState.OPEN).count() == ORDERS,
        timeout=180,
        what=f"{ORDERS} open exceptions",
    )
    failed = list(OperationalException.objects.order_by("pk"))
    assert len({exc.fingerprint for exc in failed}) == 1
    assert {(exc.system, exc.step, exc.error_class) for exc in failed} == {
        ("billing", "upsert_customer_billing", "billing.server_error")
    }
    assert all(exc.message.startswith("gave up after 5 attempts: billing 5") for exc in failed)
    assert set(Order.objects.values_list("state", flat=True)) == {OrderState.ON_HOLD}
    # ... and billing is back
    rig_faults_clear(rig, "billing")
    make_user("ivan", role="integration_support")
    base = live_server.url
    browser_login(page, base, "ivan", "pw")

    # when: support opens the exception queue grouped by identical error
    page.goto(f"{base}/exceptions/")
    page.get_by_label("Group identical errors").check()
    page.wait_for_url("**view=grouped**")
    groups = page.locator("#rows table.grouped tbody tr")
    assert groups.count() == 1
    group = groups.first
    assert group.get_attribute("data-fingerprint") == failed[0].fingerprint
    assert group.locator("td").first.inner_text() == str(ORDERS)
    assert "billing.server_error" in group.inner_text()
    screenshot(page, "support-exceptions-grouped")
    # ... retries the whole group and sees what it is about to retry
    group.locator("button[data-bulk=retry]").click()
    page.wait_for_url("**/exceptions/bulk/")
    assert f"{ORDERS} exceptions (a whole group)" in page.locator("h1").inner_text()
    listed = page.locator("table.confirm tbody tr").all_inner_texts()
    assert sorted(text.split()[0] for text in listed) == sorted(f"EXC-{e.pk}" for e in failed)
    screenshot(page, "exceptions-bulk-confirm")
    # nothing was retried before the confirmation
    assert set(OperationalException.objects.values_list("state", flat=True)) == {
        ExceptionState.OPEN
    }
    page.get_by_label("Reason").fill("billing outage over")
    page.get_by_role("button", name=f"Confirm: retry the failed step {ORDERS}").click()

    # then: the report says every one was queued, not done ...
    page.wait_for_selector("table.report")
    assert page.locator("h1").inner_text() == f"Retry the failed step: {ORDERS} queued"
    # ... and follows the worker (htmx polling) until every retried step has succeeded
    page.wait_for_selector("#outcome[data-settled='1']", timeout=180_000)
    assert page.locator("#outcome tr[data-outcome='succeeded']").count() == ORDERS
    summary = page.locator("#outcome .summary").inner_text()
    assert summary.startswith(f"{ORDERS} succeeded, 0 failed again, 0 still running")
    screenshot(page, "exceptions-bulk-report")
    # ... and the worker completes the orders, each once in billing
    wait_until(
        lambda: set(Order.objects.values_list("state", flat=True)) == {OrderState.ACTIVE},
        timeout=180,
        what="every order to go live",
    )
    assert Order.objects.count() == ORDERS == len(quote_ids)
    assert set(OperationalException.objects.values_list("state", flat=True)) == {
        ExceptionState.RESOLVED
    }
    assert len(rig_records(rig, "billing", "subscriptions")) == ORDERS
    page.goto(f"{base}/exceptions/?view=grouped")
    assert page.locator("#rows table.grouped tbody tr").inner_text() == "No exceptions match."
