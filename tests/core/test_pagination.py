"""BoundedPaginator: list pages count at most COUNT_LIMIT rows, never the whole table."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.pagination import COUNT_LIMIT, BoundedPaginator
from q2c.models import Order
from tests import factories


def orders(n: int) -> None:
    account = factories.account()
    for _ in range(n):
        factories.order(account=account)


@pytest.mark.django_db
def test_count_stops_at_the_limit_and_says_so():
    # given
    orders(5)
    paginator = BoundedPaginator(Order.objects.order_by("-created_at"), 2, limit=3)
    # when
    with CaptureQueriesContext(connection) as captured:
        count, pages, capped = paginator.count, paginator.num_pages, paginator.capped
    # then
    assert (count, pages, capped) == (3, 2, True)
    assert len(captured) == 1
    assert "LIMIT 4" in captured[0]["sql"]


@pytest.mark.django_db
def test_count_below_the_limit_is_exact():
    # given
    orders(5)
    paginator = BoundedPaginator(Order.objects.order_by("-created_at"), 2, limit=5)
    # when
    page = paginator.get_page(3)
    # then
    assert (paginator.count, paginator.num_pages, paginator.capped) == (5, 3, False)
    assert len(page.object_list) == 1


@pytest.mark.django_db
def test_a_page_past_the_limit_lands_on_the_last_counted_page():
    # given
    orders(5)
    newest_first = list(Order.objects.order_by("-created_at").values_list("pk", flat=True))
    paginator = BoundedPaginator(Order.objects.order_by("-created_at"), 2, limit=3)
    # when
    page = paginator.get_page(99)
    # then
    assert page.number == 2
    assert [order.pk for order in page.object_list] == newest_first[2:3]


@pytest.mark.django_db
def test_pager_marks_a_capped_count_with_a_plus():
    # given
    orders(5)
    capped = BoundedPaginator(Order.objects.order_by("-created_at"), 2, limit=3).get_page(1)
    exact = BoundedPaginator(Order.objects.order_by("-created_at"), 2, limit=5).get_page(1)
    # when
    capped_html = render_to_string("pager.html", {"page": capped})
    exact_html = render_to_string("pager.html", {"page": exact})
    # then
    assert "<span>page 1 of 2+</span>" in capped_html
    assert "<span>page 1 of 3</span>" in exact_html


def signed_in_auditor(client: Client) -> Any:
    user = get_user_model().objects.create_user(username="audrey", password="pw")
    user.groups.add(Group.objects.get(name="auditor"))
    client.force_login(user)
    return user


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url_name, params",
    [
        ("order-list", {}),
        ("order-list", {"state": "received"}),
        ("contract-list", {}),
        ("invoice-list", {}),
        ("account-list", {"q": "customer"}),
        ("exception-list", {}),
    ],
)
def test_every_list_page_counts_a_bounded_subquery(client, url_name, params):
    # given
    orders(2)
    signed_in_auditor(client)
    # when
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(url_name), params)
    # then
    assert response.status_code == 200
    counts = [q["sql"] for q in captured if q["sql"].startswith("SELECT COUNT(*)")]
    assert len(counts) == 1
    assert f"LIMIT {COUNT_LIMIT + 1}" in counts[0]


@pytest.mark.django_db
def test_the_grouped_queue_aggregates_once_bounded_and_counts_nothing(client):
    # given
    signed_in_auditor(client)
    # when
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("exception-list"), {"view": "grouped"})
    # then: the groups are read whole (a bounded read), never aggregated again to count them
    assert response.status_code == 200
    sqls = [q["sql"] for q in captured if "exceptions_operationalexception" in q["sql"]]
    assert len(sqls) == 1
    assert "GROUP BY" in sqls[0]
    assert f"LIMIT {COUNT_LIMIT + 1}" in sqls[0]
    assert not any(q["sql"].startswith("SELECT COUNT(*)") for q in captured)


@pytest.mark.django_db
def test_a_deep_page_reads_its_keys_first_then_only_its_rows():
    # given
    orders(5)
    qs = Order.objects.select_related("account", "legal_entity").order_by("-created_at")
    expected = list(qs.values_list("pk", flat=True))[2:4]
    paginator = BoundedPaginator(qs, 2, deferred_from=2)
    paginator.count  # noqa: B018 (counted beforehand, like the pager does)
    # when
    with CaptureQueriesContext(connection) as captured:
        page = paginator.page(2)
        rows = [(order.pk, order.account.legal_name) for order in page.object_list]
    # then
    assert [pk for pk, _ in rows] == expected
    assert len(captured) == 2
    keys_sql, rows_sql = captured[0]["sql"], captured[1]["sql"]
    assert "JOIN" not in keys_sql
    assert "OFFSET 2" in keys_sql
    assert "JOIN" in rows_sql
    assert "OFFSET" not in rows_sql


@pytest.mark.django_db
def test_a_first_page_is_one_query_with_its_joins():
    # given
    orders(5)
    qs = Order.objects.select_related("account", "legal_entity").order_by("-created_at")
    paginator = BoundedPaginator(qs, 2, deferred_from=2)
    paginator.count  # noqa: B018
    # when
    with CaptureQueriesContext(connection) as captured:
        ids = [order.pk for order in paginator.page(1).object_list]
    # then
    assert ids == list(qs.values_list("pk", flat=True))[:2]
    assert len(captured) == 1
