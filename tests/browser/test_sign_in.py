"""A person signs in through the real login form and sees only the pages of their role."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import browser_login

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_sales_ops_signs_in_and_sees_the_pages_of_the_role(
    live_server: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given
    make_user("sam", role="sales_ops")
    # when
    browser_login(page, live_server.url, "sam", "pw")
    # then
    nav = page.locator("nav")
    assert nav.get_by_role("link", name="Orders").is_visible()
    assert nav.get_by_role("link", name="Accounts").is_visible()
    assert nav.get_by_role("link", name="Invoices").count() == 0
    assert screenshot(page, "home").stat().st_size > 0


def test_a_wrong_password_is_refused_with_a_message(
    live_server: Any, page: Any, make_user: Any
) -> None:
    # given
    make_user("sam", role="sales_ops")
    page.goto(f"{live_server.url}/login/")
    # when
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    # then
    assert page.get_by_text("didn't match").is_visible()
    assert page.url == f"{live_server.url}/login/"
