"""Reads for the console: per-state counts stop at a limit, like the lists they link to."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from console.selectors import records as selectors
from q2c import services
from q2c.models import Order
from tests import factories


@pytest.mark.django_db
def test_counts_by_state_stops_each_count_at_the_limit_in_one_query():
    # given
    account = factories.account()
    for _ in range(3):
        factories.order(account=account)
    held = factories.order(account=account)
    services.order_hold(order=held, actor=factories.actor(), reason="credit check")
    # when
    with CaptureQueriesContext(connection) as captured:
        rows = selectors.counts_by_state(Order, limit=2)
    # then
    assert len(captured) == 1
    assert [(r["state"], r["count"], r["capped"]) for r in rows] == [
        ("received", 2, True), ("validated", 0, False), ("submitted_to_erp", 0, False),
        ("accepted", 0, False), ("provisioning", 0, False), ("active", 0, False),
        ("fulfilled", 0, False), ("on_hold", 1, False), ("rejected", 0, False),
        ("cancelled", 0, False),
    ]  # fmt: skip


@pytest.mark.django_db
def test_counts_by_state_at_the_limit_is_exact_and_not_capped():
    # given
    account = factories.account()
    for _ in range(2):
        factories.order(account=account)
    # when
    rows = selectors.counts_by_state(Order, limit=2)
    # then
    assert (rows[0]["state"], rows[0]["count"], rows[0]["capped"]) == ("received", 2, False)


def search_fixture() -> dict[str, str]:
    acme = factories.account(legal_name="Acme Robotics Ltd")
    other = factories.account(legal_name="Globex Foods Ltd")
    return {
        "acme_1": factories.order(account=acme).enterprise_id,
        "acme_2": factories.order(account=acme).enterprise_id,
        "other": factories.order(account=other).enterprise_id,
    }


@pytest.mark.django_db
def test_order_search_finds_by_customer_name_through_account_ids_read_first():
    # given
    ids = search_fixture()
    # when
    with CaptureQueriesContext(connection) as captured:
        qs = selectors.order_list(filters=selectors.RecordFilters(query="acme robo"))
        found = sorted(qs.values_list("enterprise_id", flat=True))
    # then
    assert found == sorted([ids["acme_1"], ids["acme_2"]])
    order_query = captured[-1]["sql"]
    assert "legal_name" not in order_query


@pytest.mark.django_db
def test_order_search_finds_by_enterprise_id():
    # given
    ids = search_fixture()
    # when
    qs = selectors.order_list(filters=selectors.RecordFilters(query=ids["other"].lower()))
    # then
    assert list(qs.values_list("enterprise_id", flat=True)) == [ids["other"]]


# The list page's 9 (session, user, groups, permissions x2, count, rows, legal entities, saved
# views) + the search's 3 (crosswalk ids, account ids, the union of matching order ids).
SEARCH_QUERIES = 12


@pytest.mark.django_db
def test_order_list_page_with_a_search_pins_its_query_count(client, django_assert_num_queries):
    # given
    ids = search_fixture()
    user = get_user_model().objects.create_user(username="audrey", password="pw")
    user.groups.add(Group.objects.get(name="auditor"))
    client.force_login(user)
    # when
    with django_assert_num_queries(SEARCH_QUERIES):
        response = client.get(reverse("order-list"), {"q": "acme"})
    # then
    html = response.content.decode()
    assert (ids["acme_1"] in html, ids["acme_2"] in html, ids["other"] in html) == (
        True,
        True,
        False,
    )


@pytest.mark.django_db
def test_order_search_for_a_whole_enterprise_id_is_an_exact_lookup():
    # given
    ids = search_fixture()
    # when
    with CaptureQueriesContext(connection) as captured:
        found = list(
            selectors.order_list(
                filters=selectors.RecordFilters(query=ids["acme_2"].lower())
            ).values_list("enterprise_id", flat=True)
        )
    # then
    assert found == [ids["acme_2"]]
    order_queries = [q["sql"] for q in captured if '"q2c_order"' in q["sql"]]
    assert any(f"\"enterprise_id\" IN ('{ids['acme_2']}'" in sql for sql in order_queries)
    assert not any("LIKE" in sql for sql in order_queries)
