"""Console pages: the home page, htmx partials, pinned query counts, signing in and out."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from masterdata.models import Account
from orchestration.workflows.models import StepState, WorkflowRun
from q2c import services
from q2c.models import OrderState
from tests import factories


def signed_in(client: Client, role: str, username: str = "alice") -> Any:
    user = get_user_model().objects.create_user(username=username, password="pw")
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


def seed_records() -> None:
    """3 orders (received, validated, on hold), 2 contracts (pending, active), 2 invoices
    (draft, posted)."""
    actor = factories.actor()
    account = factories.account()
    factories.order(account=account)
    validated = factories.order(account=account)
    services.order_validate(order=validated, actor=actor, reason="checked")
    held = factories.order(account=account)
    services.order_hold(order=held, actor=actor, reason="credit check")
    factories.contract(account=account)
    active = factories.contract(account=account)
    services.contract_activate(contract=active, actor=actor, reason="accepted")
    factories.invoice(account=account)
    posted = factories.invoice(account=account)
    services.invoice_post(invoice=posted, actor=actor, reason="issued")


ORDER_COUNTS = [
    ("received", 1), ("validated", 1), ("submitted_to_erp", 0), ("accepted", 0),
    ("provisioning", 0), ("active", 0), ("fulfilled", 0), ("on_hold", 1), ("rejected", 0),
    ("cancelled", 0),
]  # fmt: skip
CONTRACT_COUNTS = [
    ("pending_activation", 1), ("active", 1), ("renewed", 0), ("expired", 0), ("cancelled", 0),
]  # fmt: skip
INVOICE_COUNTS = [
    ("draft", 1), ("posted", 1), ("partially_paid", 0), ("paid", 0), ("void", 0),
]  # fmt: skip


def panel_counts(response: Any) -> list[tuple[str, list[tuple[str, int]]]]:
    return [
        (panel["title"], [(row["state"], row["count"]) for row in panel["rows"]])
        for panel in response.context["panels"]
    ]


# --- Home -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, expected",
    [
        ("sales_ops", [("Orders", ORDER_COUNTS), ("Contracts", CONTRACT_COUNTS)]),
        (
            "finance_ops",
            [
                ("Orders", ORDER_COUNTS),
                ("Contracts", CONTRACT_COUNTS),
                ("Invoices", INVOICE_COUNTS),
            ],
        ),
        ("data_steward", []),
        (
            "auditor",
            [
                ("Orders", ORDER_COUNTS),
                ("Contracts", CONTRACT_COUNTS),
                ("Invoices", INVOICE_COUNTS),
            ],
        ),
    ],
)
def test_home_shows_counts_by_state_for_the_records_the_role_may_see(client, role, expected):
    # given
    seed_records()
    signed_in(client, role)
    # when
    response = client.get(reverse("home"))
    # then
    assert response.status_code == 200
    assert panel_counts(response) == expected
    html = response.content.decode()
    assert (
        f'signed in as <strong>alice</strong> with the role <strong class="role">{role}</strong>'
        in html
    )
    titles = [title for title, _ in expected]
    for title, url_name in (
        ("Orders", "order-list"),
        ("Contracts", "contract-list"),
        ("Invoices", "invoice-list"),
    ):
        assert (f'<a href="{reverse(url_name)}">{title}</a> by state' in html) is (title in titles)


@pytest.mark.django_db
def test_home_renders_each_count_in_its_state_cell(client):
    # given
    seed_records()
    signed_in(client, "finance_ops")
    # when
    html = client.get(reverse("home")).content.decode()
    # then
    cells = re.findall(r'<td class="num" data-state="([a-z_]+)">(\d+)</td>', html)
    expected = [*ORDER_COUNTS, *CONTRACT_COUNTS, *INVOICE_COUNTS]
    assert [(state, int(count)) for state, count in cells] == expected


@pytest.mark.django_db
def test_home_tells_a_role_without_record_lists_where_to_go(client):
    # given
    seed_records()
    signed_in(client, "data_steward")
    # when
    html = client.get(reverse("home")).content.decode()
    # then
    assert "Your role has no record lists; use the pages in the navigation above." in html
    assert "data-state=" not in html


# --- htmx -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_htmx_request_gets_only_the_rows_partial(client):
    # given
    seed_records()
    signed_in(client, "sales_ops")
    held = factories.order()
    services.order_hold(order=held, actor=factories.actor(), reason="credit check")
    # when
    response = client.get(
        reverse("order-list"), {"state": "on_hold"}, headers={"HX-Request": "true"}
    )
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="rows">')
    assert "<html" not in html
    assert "<body" not in html
    assert re.findall(r'href="/orders/(ORD-\d+)/"', html) == ["ORD-000004", "ORD-000003"]


@pytest.mark.django_db
def test_full_page_loads_htmx_locally_and_sends_the_csrf_token_with_htmx_requests(client):
    # given
    signed_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"))
    # then
    html = response.content.decode()
    assert html.startswith("<!doctype html>")
    assert '<div id="rows">' in html
    assert '<script src="/static/js/htmx.min.js" defer></script>' in html
    assert re.findall(r'<script[^>]*src="([^"]+)"', html) == ["/static/js/htmx.min.js"]
    assert finders.find("js/htmx.min.js") is not None
    assert re.search(r'<body hx-headers=\'\{"X-CSRFToken": "[A-Za-z0-9]{64}"\}\'>', html)


@pytest.mark.django_db
def test_csrf_token_in_hx_headers_is_accepted_for_a_post(make_user):
    # given
    client = Client(enforce_csrf_checks=True)
    user = make_user("bob", role="sales_ops")
    client.force_login(user)
    order = factories.order()
    html = client.get(reverse("order-list")).content.decode()
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', html).group(1)
    url = reverse("order-hold", args=[order.enterprise_id])
    # when
    without_token = client.post(url, {"reason": "credit check"})
    with_token = client.post(url, {"reason": "credit check"}, headers={"X-CSRFToken": token})
    # then
    assert (without_token.status_code, with_token.status_code) == (403, 302)
    order.refresh_from_db()
    assert order.state == OrderState.ON_HOLD


@pytest.mark.django_db
def test_releasing_a_held_order_no_workflow_ran_for_starts_quote_to_cash(client, make_user):
    # given: an order put on hold before any workflow ran for it (as the demo seeds them)
    order = factories.order()
    services.order_validate(order=order, actor=factories.actor(), reason="checked")
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    client.force_login(make_user("sam", role="sales_ops"))
    detail = client.get(reverse("order-detail", args=[order.enterprise_id])).content.decode()
    assert 'data-notice="no-workflow"' in detail
    # when
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": "credit approved"},
        follow=True,
    )  # fmt: skip
    # then: released, and the workflow that moves it is started with its first step queued
    order.refresh_from_db()
    assert order.state == OrderState.VALIDATED
    run = WorkflowRun.objects.get(order=order)
    assert (run.kind, run.subject_id, run.state) == (
        "quote_to_cash",
        order.enterprise_id,
        "running",
    )
    assert list(run.steps.filter(state=StepState.QUEUED).values_list("name", flat=True)) == [
        "validate_quote"
    ]
    assert [m.message for m in response.context["messages"]] == [
        f"{order} released; no workflow had run for it, so quote to cash started "
        "(step validate_quote queued)"
    ]
    assert 'data-notice="no-workflow"' not in response.content.decode()


@pytest.mark.django_db
def test_a_release_refused_starts_no_workflow_and_changes_nothing(client, make_user):
    # given: a held order no workflow ran for
    order = factories.order()
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    client.force_login(make_user("sam", role="sales_ops"))
    before = order.history.count()
    # when: released without a reason
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": "  "}, follow=True
    )
    # then
    assert [m.message for m in response.context["messages"]] == [
        f"a reason is required to 'release' {order}"
    ]
    order.refresh_from_db()
    assert (order.state, order.history.count()) == (OrderState.ON_HOLD, before)
    assert not WorkflowRun.objects.filter(order=order).exists()


# --- Query counts ---------------------------------------------------------------------------


def add_orders(account: Account, n: int) -> None:
    for _ in range(n):
        factories.order(account=account)


def add_contracts(account: Account, n: int) -> None:
    for _ in range(n):
        factories.contract(account=account)


def add_invoices(account: Account, n: int) -> None:
    for _ in range(n):
        factories.invoice(account=account)


def add_accounts(account: Account, n: int) -> None:
    for _ in range(n):
        factories.account(legal_entity=account.legal_entity)


# Session, user, the user's groups (role), user and group permissions, count, rows, the
# person's saved views of the list.
LIST_QUERIES = 8
# ... and the legal entities of the order and contract lists' filter.
RECORD_LIST_QUERIES = LIST_QUERIES + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url_name, add_rows, expected_rows, queries",
    [
        ("order-list", add_orders, '<td><a href="/orders/ORD-', RECORD_LIST_QUERIES),
        ("contract-list", add_contracts, "<td>CTR-", RECORD_LIST_QUERIES),
        ("invoice-list", add_invoices, '<td><a href="/invoices/INV-', LIST_QUERIES),
        ("account-list", add_accounts, '">ACC-', LIST_QUERIES),
    ],
)
def test_list_page_query_count_does_not_grow_with_rows(
    client: Client,
    django_assert_num_queries: Any,
    url_name: str,
    add_rows: Callable[[Account, int], None],
    expected_rows: str,
    queries: int,
):
    # given
    signed_in(client, "auditor")
    account = factories.account()
    seeded = 1 if url_name == "account-list" else 0
    add_rows(account, 5 - seeded)
    url = reverse(url_name)
    # when
    with django_assert_num_queries(queries):
        five = client.get(url)
    add_rows(account, 25)
    with django_assert_num_queries(queries):
        thirty = client.get(url)
    # then
    assert five.content.decode().count(expected_rows) == 5
    assert thirty.content.decode().count(expected_rows) == 30


# --- Signing in and out ---------------------------------------------------------------------


@pytest.mark.django_db
def test_login_with_the_right_password_lands_on_home(client, make_user):
    # given
    make_user("carol", role="finance_ops")
    # when
    response = client.post(reverse("login"), {"username": "carol", "password": "pw"})
    # then
    assert (response.status_code, response["Location"]) == (302, "/")
    home = client.get("/")
    assert (home.status_code, home.context["role"], home.context["user"].username) == (
        200,
        "finance_ops",
        "carol",
    )


@pytest.mark.django_db
def test_login_follows_next_to_the_page_asked_for(client, make_user):
    # given
    make_user("carol", role="finance_ops")
    # when
    response = client.post(
        "/login/?next=/invoices/", {"username": "carol", "password": "pw", "next": "/invoices/"}
    )
    # then
    assert (response.status_code, response["Location"]) == (302, "/invoices/")


@pytest.mark.django_db
def test_login_with_a_wrong_password_stays_signed_out(client, make_user):
    # given
    make_user("carol", role="finance_ops")
    # when
    response = client.post(reverse("login"), {"username": "carol", "password": "wrong"})
    # then
    assert response.status_code == 200
    assert "Your username and password didn't match." in response.content.decode()
    assert client.get("/")["Location"] == "/login/?next=/"


@pytest.mark.django_db
def test_login_page_renders_a_form(client):
    # given / when
    response = client.get(reverse("login"))
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert '<form method="post" action="/login/">' in html
    assert 'name="csrfmiddlewaretoken"' in html


@pytest.mark.django_db
def test_logout_is_post_only_and_signs_out(client, make_user):
    # given
    user = make_user("dave", role="auditor")
    client.force_login(user)
    # when
    by_get = client.get(reverse("logout"))
    still_in = client.get("/").status_code
    by_post = client.post(reverse("logout"))
    # then
    assert (by_get.status_code, still_in) == (405, 200)
    assert (by_post.status_code, by_post["Location"]) == (302, "/login/")
    assert client.get("/")["Location"] == "/login/?next=/"
