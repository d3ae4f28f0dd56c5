"""Who may open which console page and run which action, checked on the server.

The matrix is generated from the roles and the page table, so a new role or page is covered
without editing this file; ``EXPECTED_PAGES`` is the one hand-written statement of policy,
so a change to ``core.roles`` that widens or narrows access fails here until it is reviewed.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group
from django.urls import reverse

from core.navigation import PAGES, may_see
from core.roles import ROLE_NAMES, role_of
from q2c import services
from q2c.models import Order, OrderState
from tests import factories

ANONYMOUS = "anonymous"
NO_ROLE = "no role"
ADMIN = "admin"
WHO = [*ROLE_NAMES, ADMIN, NO_ROLE, ANONYMOUS]

# Every role reads the audit trail of the records it may view.
AUDIT_PAGES = {"audit-history", "audit-operators", "audit-as-of", "audit-export"}
RECONCILIATION_PAGES = {"reconciliation", "reconciliation-books", "reconciliation-export"}
EXPECTED_PAGES: dict[str, set[str]] = {
    "sales_ops": {
        "home",
        "dashboard",
        "order-list",
        "contract-list",
        "account-list",
        "exception-list",
        "replay-list",
    }
    | AUDIT_PAGES,
    "finance_ops": {
        "home",
        "dashboard",
        "order-list",
        "contract-list",
        "invoice-list",
        "account-list",
        "exception-list",
        "replay-list",
    }
    | AUDIT_PAGES
    | RECONCILIATION_PAGES,
    "data_steward": {
        "home",
        "account-list",
        "duplicate-list",
        "duplicate-groups",
        "match-file",
        "merge-list",
        "exception-list",
        "replay-list",
    }
    | AUDIT_PAGES,
    "integration_support": {
        "home",
        "dashboard",
        "order-list",
        "contract-list",
        "invoice-list",
        "account-list",
        "exception-list",
        "replay-list",
        "dead-letter-list",
    }
    | AUDIT_PAGES
    | RECONCILIATION_PAGES,
    "auditor": {
        "home",
        "dashboard",
        "order-list",
        "contract-list",
        "invoice-list",
        "account-list",
        "duplicate-list",
        "duplicate-groups",
        "merge-list",
        "exception-list",
        "replay-list",
        "dead-letter-list",
    }
    | AUDIT_PAGES
    | RECONCILIATION_PAGES,
    ADMIN: {
        "home",
        "dashboard",
        "order-list",
        "contract-list",
        "invoice-list",
        "account-list",
        "duplicate-list",
        "duplicate-groups",
        "match-file",
        "merge-list",
        "exception-list",
        "replay-list",
        "dead-letter-list",
    }
    | AUDIT_PAGES
    | RECONCILIATION_PAGES,
    NO_ROLE: set(),
    ANONYMOUS: set(),
}


def user_for(who: str) -> Any:
    """A fresh user acting as ``who`` (a role name, admin, no role, or anonymous)."""
    if who == ANONYMOUS:
        return AnonymousUser()
    users = get_user_model().objects
    if who == ADMIN:
        return users.create_superuser(username="admin-user", password="pw", email="a@example.com")
    user = users.create_user(username=f"user-{who.replace(' ', '-')}", password="pw")
    if who != NO_ROLE:
        user.groups.add(Group.objects.get(name=who))
    return user


def may_open(user: Any, page: Any) -> bool:
    """The policy under test: the page's permission, and a role for any signed-in page."""
    return may_see(user, page) and bool(role_of(user))


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES, ids=[page.url_name for page in PAGES])
@pytest.mark.parametrize("who", WHO)
def test_page_is_served_exactly_to_those_allowed_to_see_it(client, who, page):
    # given
    user = user_for(who)
    if user.is_authenticated:
        client.force_login(user)
    url = reverse(page.url_name)
    # when
    response = client.get(url)
    # then
    if not user.is_authenticated:
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={url}")
    elif may_open(user, page):
        assert response.status_code == 200
    else:
        assert response.status_code == 403


@pytest.mark.django_db
def test_generated_page_matrix_matches_the_written_policy():
    # given
    users = {who: user_for(who) for who in WHO}
    # when
    matrix = {
        who: {page.url_name for page in PAGES if may_open(user, page)}
        for who, user in users.items()
    }
    # then
    assert matrix == EXPECTED_PAGES


@pytest.mark.django_db
def test_navigation_lists_exactly_the_pages_the_role_may_open(client):
    # given
    user = user_for("data_steward")
    client.force_login(user)
    # when
    response = client.get(reverse("home"))
    # then
    assert [page.url_name for page in response.context["console_nav"]] == [
        "home",
        "account-list",
        "duplicate-list",
        "merge-list",
        "exception-list",
        "replay-list",
        "audit-history",
    ]


# --- The order hold action ------------------------------------------------------------------


def history_rows(order: Order) -> list[tuple[str, str | None, str | None]]:
    return list(
        order.history.order_by("history_id").values_list(
            "state", "history_user__username", "history_change_reason"
        )
    )


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["sales_ops", ADMIN])
def test_hold_puts_the_order_on_hold_as_the_signed_in_person(client, who):
    # given
    user = user_for(who)
    order = factories.order()
    client.force_login(user)
    # when
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": "customer disputes terms"}
    )
    # then
    assert (response.status_code, response["Location"]) == (
        302,
        f"/orders/{order.enterprise_id}/",
    )
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (
        OrderState.ON_HOLD,
        OrderState.RECEIVED,
        "customer disputes terms",
    )
    assert history_rows(order)[-1] == ("on_hold", user.username, "customer disputes terms")


@pytest.mark.django_db
@pytest.mark.parametrize("who", [role for role in ROLE_NAMES if role != "sales_ops"])
def test_hold_is_refused_to_roles_without_the_hold_permission(client, who):
    # given
    user = user_for(who)
    order = factories.order()
    before = history_rows(order)
    client.force_login(user)
    # when
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": "customer disputes terms"}
    )
    # then
    assert response.status_code == 403
    order.refresh_from_db()
    assert (order.state, order.hold_reason) == (OrderState.RECEIVED, "")
    assert history_rows(order) == before


@pytest.mark.django_db
def test_hold_is_refused_to_a_user_without_a_role(client):
    # given
    user = user_for(NO_ROLE)
    order = factories.order()
    client.force_login(user)
    # when
    response = client.post(reverse("order-hold", args=[order.enterprise_id]), {"reason": "x"})
    # then
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.state == OrderState.RECEIVED


@pytest.mark.django_db
def test_hold_by_get_is_not_allowed(client):
    # given
    user = user_for("sales_ops")
    order = factories.order()
    client.force_login(user)
    # when
    response = client.get(reverse("order-hold", args=[order.enterprise_id]), {"reason": "x"})
    # then
    assert response.status_code == 405
    order.refresh_from_db()
    assert order.state == OrderState.RECEIVED


@pytest.mark.django_db
def test_hold_by_anonymous_redirects_to_login_and_changes_nothing(client):
    # given
    order = factories.order()
    url = reverse("order-hold", args=[order.enterprise_id])
    # when
    response = client.post(url, {"reason": "x"})
    # then
    assert (response.status_code, response["Location"]) == (302, f"/login/?next={url}")
    order.refresh_from_db()
    assert order.state == OrderState.RECEIVED


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "   "])
def test_hold_without_a_reason_shows_an_error_and_changes_nothing(client, reason):
    # given
    user = user_for("sales_ops")
    order = factories.order()
    before = history_rows(order)
    client.force_login(user)
    # when
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": reason}, follow=True
    )
    # then
    assert response.redirect_chain == [(f"/orders/{order.enterprise_id}/", 302)]
    assert [(m.level_tag, m.message) for m in response.context["messages"]] == [
        ("error", f"a reason is required to 'hold' {order.enterprise_id}")
    ]
    assert f"a reason is required to &#x27;hold&#x27; {order.enterprise_id}" in (
        response.content.decode()
    )
    order.refresh_from_db()
    assert (order.state, order.hold_reason) == (OrderState.RECEIVED, "")
    assert history_rows(order) == before


@pytest.mark.django_db
def test_hold_on_a_held_order_releases_it_to_where_it_was(client):
    # given
    user = user_for("sales_ops")
    order = factories.order()
    services.order_validate(order=order, actor=factories.actor(), reason="checked")
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    client.force_login(user)
    # when
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": "credit approved"}
    )
    # then
    assert response.status_code == 302
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (
        OrderState.VALIDATED,
        "",
        "",
    )
    assert history_rows(order)[-1] == ("validated", "user-sales_ops", "credit approved")
