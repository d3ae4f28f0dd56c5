"""axe-core (vendored: tests/browser/vendor/axe.min.js, 4.14.1, MPL-2.0) finds no serious or
critical violation on the console's main pages, and every page offers a skip link to its
main content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.audit import Actor
from q2c import services
from tests import factories
from tests.browser.conftest import browser_login

pytestmark = pytest.mark.integration

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
PAGES = [
    "/", "/dashboard/", "/orders/", "/orders/?state=on_hold", "/contracts/", "/invoices/",
    "/accounts/", "/duplicates/", "/merges/", "/exceptions/", "/exceptions/?view=grouped",
    "/replays/", "/audit/", "/no/such/page/",
]  # fmt: skip


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """The serious and critical violations axe finds on the page as it is now (evaluated
    through the browser's debugging protocol, so a Content-Security-Policy does not stop it)."""
    page.evaluate(AXE)
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def test_the_main_pages_have_no_serious_or_critical_accessibility_violation(
    live_server: Any, page: Any, make_user: Any
) -> None:
    # given: records on every list, an admin who may open every page
    order = factories.order()
    services.order_hold(order=order, actor=Actor.system("worker"), reason="credit check")
    factories.contract()
    make_user("ada", is_staff=True, is_superuser=True)
    base = live_server.url
    browser_login(page, base, "ada", "pw")
    found = {}
    for path in PAGES:
        # when
        page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
        # then
        violations = axe_violations(page)
        if violations:
            found[path] = violations
    assert found == {}


def test_the_skip_link_moves_focus_to_the_main_content(
    live_server: Any, page: Any, make_user: Any
) -> None:
    # given
    make_user("sam", role="sales_ops")
    base = live_server.url
    browser_login(page, base, "sam", "pw")
    page.goto(f"{base}/orders/")
    # when: the first Tab reaches the skip link, Enter follows it
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    assert skip.evaluate("el => el === document.activeElement")
    assert skip.is_visible()  # shown while it has the focus
    page.keyboard.press("Enter")
    # then
    assert page.evaluate("document.activeElement.id") == "content"
