"""Filters live in the URL: the browser's Back button restores the table and the form as they
were, a reload keeps them, and the audit's "older" link moves the URL along."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from q2c import services
from q2c.models import OrderState
from tests import factories
from tests.browser.conftest import browser_login

pytestmark = pytest.mark.integration


def shown_orders(page: Any) -> list[str]:
    return sorted(page.locator("#rows tbody tr td:first-child").all_inner_texts())


def test_back_restores_the_previous_filters_in_the_table_and_the_form(
    live_server: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given: held and running orders in two legal entities
    north = factories.account(legal_entity=factories.legal_entity(code="NORTH"))
    south = factories.account(legal_entity=factories.legal_entity(code="SOUTH"))
    held_north, held_south = factories.order(account=north), factories.order(account=south)
    running_south = factories.order(account=south)
    for order in (held_north, held_south):
        services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    make_user("sam", role="sales_ops")
    base = live_server.url
    browser_login(page, base, "sam", "pw")
    page.goto(f"{base}/orders/")
    assert len(shown_orders(page)) == 3
    # when: the state filter, then the legal entity, then Back
    page.locator("form.filters select[name=state]").select_option(OrderState.ON_HOLD)
    page.wait_for_url("**/orders/?*state=on_hold*")
    assert shown_orders(page) == sorted([held_north.enterprise_id, held_south.enterprise_id])
    page.locator("form.filters select[name=legal_entity]").select_option("SOUTH")
    page.wait_for_url("**legal_entity=SOUTH**")
    assert shown_orders(page) == [held_south.enterprise_id]
    page.go_back()
    page.wait_for_url(lambda url: "state=on_hold" in url and "legal_entity=SOUTH" not in url)
    # then: the table and the form both show the state filter alone
    expect(page.locator("#rows tbody tr")).to_have_count(2)
    assert shown_orders(page) == sorted([held_north.enterprise_id, held_south.enterprise_id])
    assert page.locator("form.filters select[name=state]").input_value() == OrderState.ON_HOLD
    assert page.locator("form.filters select[name=legal_entity]").input_value() == ""
    # ... and the next change keeps it
    page.locator("form.filters select[name=sort]").select_option("id")
    page.wait_for_url("**sort=id**")
    assert "state=on_hold" in page.url
    assert shown_orders(page) == sorted([held_north.enterprise_id, held_south.enterprise_id])
    # ... and a reload too
    page.reload()
    assert page.locator("form.filters select[name=state]").input_value() == OrderState.ON_HOLD
    assert running_south.enterprise_id not in shown_orders(page)
    screenshot(page, "orders-filtered")


def test_the_merge_and_invoice_filters_survive_a_reload(
    live_server: Any, page: Any, make_user: Any
) -> None:
    # given
    make_user("fiona", role="finance_ops")
    base = live_server.url
    browser_login(page, base, "fiona", "pw")
    # when: an invoice state is chosen, then the page reloaded
    page.goto(f"{base}/invoices/")
    page.locator("form.filters select[name=state]").select_option("paid")
    page.wait_for_url("**/invoices/?state=paid")
    page.reload()
    # then
    assert page.locator("form.filters select[name=state]").input_value() == "paid"


def test_the_audits_older_link_moves_the_url_along(
    live_server: Any, page: Any, make_user: Any
) -> None:
    # given: more history rows than one page shows
    account = factories.account()
    for _ in range(55):
        factories.order(account=account)
    make_user("audrey", role="auditor")
    base = live_server.url
    browser_login(page, base, "audrey", "pw")
    page.goto(f"{base}/audit/?model=q2c.order")
    first_page = page.locator("#rows table.audit tbody tr").first.inner_text()
    # when
    page.get_by_role("link", name="older →").click()
    page.wait_for_url("**after=**")
    # then: the URL names the older page, and Back shows the newest rows again
    assert "model=q2c.order" in page.url
    page.go_back()
    page.wait_for_url(lambda url: "after=" not in url)
    expect(page.locator("#rows table.audit tbody tr").first).to_have_text(first_page)


def test_filters_chosen_after_the_page_loaded_are_saved_as_a_view_and_open_again(
    live_server: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given: held and running orders
    held, running = factories.order(), factories.order()
    services.order_hold(order=held, actor=factories.actor(), reason="credit check")
    make_user("sam", role="sales_ops")
    base = live_server.url
    browser_login(page, base, "sam", "pw")
    page.goto(f"{base}/orders/")
    # when: sam filters (htmx swaps the rows and pushes the URL), saves, goes home, opens it
    page.locator("form.filters select[name=state]").select_option(OrderState.ON_HOLD)
    page.wait_for_url("**/orders/?*state=on_hold*")
    page.get_by_label("Save these filters as").fill("Held orders")
    page.get_by_role("button", name="Save view").click()
    page.wait_for_load_state()
    screenshot(page, "orders-saved-view")
    page.goto(f"{base}/")
    page.goto(f"{base}/orders/")
    page.get_by_role("link", name="Held orders").click()
    # then: the filters of the moment it was saved come back, in the table and the form
    page.wait_for_url("**/orders/?*state=on_hold*")
    assert shown_orders(page) == [held.enterprise_id]
    assert running.enterprise_id not in shown_orders(page)
    assert page.locator("form.filters select[name=state]").input_value() == OrderState.ON_HOLD
