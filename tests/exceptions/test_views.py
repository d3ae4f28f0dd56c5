"""The exception queue pages: filters, grouping, htmx rows, paging, the detail page, queries."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from console.views.records import PAGE_SIZE
from core.audit import Actor
from core.problems import Category
from exceptions.services import exception_ignore, exception_retry
from exceptions.views import NEXT_STEPS
from orchestration.models import OutboundCall
from tests.exceptions.helpers import ADMIN, NO_ROLE, raise_exception, user_for


def listed(response: Any) -> list[int]:
    return [exc.pk for exc in response.context["page"]]


def cells(row_html: str) -> list[str]:
    """The text of each cell of one table row."""
    found = re.findall(r"<td[^>]*>(.*?)</td>", row_html, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def body_rows(page_html: str, table_class: str = "list") -> list[list[str]]:
    table = re.search(rf'<table class="{table_class}">(.*?)</table>', page_html, flags=re.S)
    assert table is not None
    tbody = re.search(r"<tbody>(.*?)</tbody>", table[1], flags=re.S)
    assert tbody is not None
    return [cells(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", tbody[1], flags=re.S)]


def person(who: str) -> Actor:
    return Actor.person(user_for(who))


# --- The list -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state, expected",
    [(None, ["retrying", "open"]), ("any", ["ignored", "retrying", "open"]),
     ("ignored", ["ignored"]), ("resolved", []), ("open", ["open"]),
     ("bogus", ["retrying", "open"])],
)  # fmt: skip
def test_the_list_shows_open_and_retrying_by_default_and_filters_by_state(client, state, expected):
    # given
    by_state = {
        "open": raise_exception(),
        "retrying": raise_exception(),
        "ignored": raise_exception(),
    }
    exception_retry(exception=by_state["retrying"], actor=person(ADMIN), reason="erp is back")
    exception_ignore(exception=by_state["ignored"], actor=Actor.system("worker"), reason="test")
    client.force_login(user_for("auditor"))
    # when
    response = client.get(reverse("exception-list"), {"state": state} if state else {})
    # then
    assert response.status_code == 200
    assert listed(response) == [by_state[name].pk for name in expected]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, expected",
    [
        ({"category": "mapping"}, ["mapping"]),
        ({"owner_team": "data_steward"}, ["master_data", "mapping"]),
        ({"system": "billing"}, ["downstream"]),
        ({"system": "erp", "owner_team": "data_steward"}, ["master_data"]),
        ({"owner_team": "finance_ops"}, []),
        ({"category": "nonsense", "system": "mainframe"}, ["master_data", "downstream", "mapping"]),
    ],
)
def test_the_list_filters_by_category_owner_team_and_system(client, params, expected):
    # given
    raised = {
        "mapping": raise_exception(
            step="check_quote", category=Category.MAPPING, error_class="UnmappedProduct"
        ),
        "downstream": raise_exception(
            step="create_subscription", category=Category.DOWNSTREAM_API, error_class="HTTP500"
        ),
        "master_data": raise_exception(),
    }
    client.force_login(user_for("integration_support"))
    # when
    response = client.get(reverse("exception-list"), params)
    # then
    assert listed(response) == [raised[name].pk for name in expected]


@pytest.mark.django_db
def test_a_row_shows_id_age_sla_category_severity_team_system_step_order_and_message(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("sales_ops"))
    # when
    page = client.get(reverse("exception-list")).content.decode()
    # then
    assert body_rows(page) == [
        [
            f"EXC-{exc.pk}",
            "0\xa0minutes",
            timezone.localtime(exc.sla_due_at).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "Master data",
            "High",
            "Master data",
            "erp / create_customer",
            exc.order.enterprise_id,
            "Open",
            "customer rejected: tax id invalid",
            "—",
            "",
        ]
    ]
    assert f'<a href="/exceptions/{exc.pk}/">EXC-{exc.pk}</a>' in page
    assert f'<a href="/orders/{exc.order.enterprise_id}/">{exc.order.enterprise_id}</a>' in page


@pytest.mark.django_db
def test_an_overdue_exception_is_highlighted(client):
    # given
    on_time = raise_exception()
    overdue = raise_exception()
    overdue.sla_due_at = timezone.now() - dt.timedelta(minutes=5)
    overdue.save()
    client.force_login(user_for("sales_ops"))
    # when
    page = client.get(reverse("exception-list")).content.decode()
    # then
    rows = re.findall(r'<tr><td><a href="/exceptions/(\d+)/">.*?</tr>', page, flags=re.S)
    flagged = re.findall(
        r'<tr><td><a href="/exceptions/(\d+)/">[^<]*</a></td><td>[^<]*</td>'
        r'<td class="error overdue">[^<]* \(overdue\)</td>',
        page,
    )
    assert rows == [str(overdue.pk), str(on_time.pk)]
    assert flagged == [str(overdue.pk)]


@pytest.mark.django_db
def test_grouped_view_counts_identical_errors_once_per_fingerprint(client):
    # given
    same = [raise_exception(message=f"customer {n} rejected") for n in range(3)]
    other = raise_exception(
        step="create_subscription", category=Category.DOWNSTREAM_API, error_class="HTTP500",
        message="billing answered 500",
    )  # fmt: skip
    client.force_login(user_for("integration_support"))
    # when
    response = client.get(reverse("exception-list"), {"view": "grouped"})
    # then
    rows = [
        (row["fingerprint"], row["count"], row["category_label"], row["owner_team_label"],
         row["system"], row["step"], row["error_class"])
        for row in response.context["page"]
    ]  # fmt: skip
    assert rows == [
        (same[0].fingerprint, 3, "Master data", "Master data", "erp", "create_customer",
         "ValidationError"),
        (other.fingerprint, 1, "Downstream API", "Integration support", "billing",
         "create_subscription", "HTTP500"),
    ]  # fmt: skip
    page = response.content.decode()
    assert f'<a href="/exceptions/?fingerprint={same[0].fingerprint}">3</a>' in page
    assert body_rows(page, "list grouped")[0][8] == "customer 2 rejected"


@pytest.mark.django_db
def test_grouped_view_on_a_database_without_limits_in_a_union_shows_each_groups_example(
    client, monkeypatch
):
    # given: two groups, on a database that cannot LIMIT inside a UNION (SQLite, the demo's)
    from django.db import connection

    first = [raise_exception(message=f"customer {n} rejected") for n in range(2)]
    other = raise_exception(
        step="create_subscription", category=Category.DOWNSTREAM_API, error_class="HTTP500",
        message="billing answered 500",
    )  # fmt: skip
    monkeypatch.setattr(connection.features, "supports_slicing_ordering_in_compound", False)
    client.force_login(user_for("integration_support"))
    # when
    response = client.get(reverse("exception-list"), {"view": "grouped"})
    # then
    assert response.status_code == 200
    examples = [(row["fingerprint"], row["example"]) for row in response.context["page"]]
    assert examples == [
        (first[0].fingerprint, "customer 1 rejected"),
        (other.fingerprint, "billing answered 500"),
    ]


@pytest.mark.django_db
def test_the_fingerprint_filter_lists_the_members_of_one_group(client):
    # given
    same = [raise_exception() for _ in range(2)]
    raise_exception(step="create_subscription", error_class="HTTP500")
    client.force_login(user_for("integration_support"))
    # when
    response = client.get(reverse("exception-list"), {"fingerprint": same[0].fingerprint})
    # then
    assert listed(response) == [same[1].pk, same[0].pk]


@pytest.mark.django_db
@pytest.mark.parametrize("params", [{}, {"view": "grouped"}])
def test_htmx_request_gets_only_the_rows_partial(client, params):
    # given
    raise_exception()
    client.force_login(user_for("sales_ops"))
    # when
    response = client.get(reverse("exception-list"), params, headers={"HX-Request": "true"})
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="rows">')
    assert "<html" not in page
    assert "<form" not in page


@pytest.mark.django_db
def test_full_page_has_the_filter_form_with_htmx_and_a_plain_get_fallback(client):
    # given
    client.force_login(user_for("sales_ops"))
    # when
    page = client.get(reverse("exception-list")).content.decode()
    # then
    assert '<form class="filters" method="get" action="/exceptions/" hx-get="/exceptions/"' in page
    assert '<div id="rows">' in page


@pytest.mark.django_db
def test_the_list_pages_by_fifty_and_the_pager_keeps_the_filters(client):
    # given
    raised = [raise_exception() for _ in range(PAGE_SIZE + 1)]
    client.force_login(user_for("auditor"))
    # when
    first = client.get(reverse("exception-list"), {"category": "master_data"})
    second = client.get(reverse("exception-list"), {"category": "master_data", "page": 2})
    # then
    assert listed(first) == [exc.pk for exc in reversed(raised)][:PAGE_SIZE]
    assert listed(second) == [raised[0].pk]
    assert '<a href="/exceptions/?category=master_data&amp;page=2"' in first.content.decode()


# --- The detail page ------------------------------------------------------------------------


def add_calls(correlation_id: str, n: int) -> None:
    for i in range(n):
        OutboundCall.objects.create(
            system="erp", operation="customer_create", method="POST", path="/erp/customers",
            status_code=422, outcome="permanent", error_class="validation", latency_ms=40 + i,
            correlation_id=correlation_id, request_body='{"tax_id": "BODY-NOT-SHOWN"}',
            response_body='{"error": "BODY-NOT-SHOWN"}',
        )  # fmt: skip


@pytest.mark.django_db
def test_detail_shows_message_context_order_steps_calls_and_next_steps(client):
    # given
    exc = raise_exception(field="tax_id")
    order_id = exc.order.enterprise_id
    add_calls(order_id, 1)
    add_calls("ORD-999999", 1)  # another deal's call is not shown
    client.force_login(user_for("auditor"))
    # when
    response = client.get(reverse("exception-detail", args=[exc.pk]))
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert '<p class="message">customer rejected: tax id invalid</p>' in page
    assert f'<a href="/orders/{order_id}/">{order_id}</a>' in page
    assert html.unescape(re.search(r'<pre class="context">(.*?)</pre>', page, re.S)[1]) == (
        "{\n"
        '  "attempts": 1,\n'
        '  "error_class": "ValidationError",\n'
        '  "field": "tax_id",\n'
        f'  "idempotency_key": "{order_id}:v1:create_customer",\n'
        '  "step": "create_customer",\n'
        '  "workflow": "exceptions_test_flow"\n'
        "}"
    )
    assert body_rows(page, "list steps") == [
        ["0", "check_quote", "default", "Succeeded", "1/5", "", f"CHECK_QUOTE-{order_id}"],
        ["1", "create_customer", "erp", "Failed", "1/5", "customer rejected: tax id invalid", ""],
        ["2", "create_subscription", "billing", "Pending", "0/5", "", ""],
    ]
    calls = body_rows(page, "list calls")
    assert [row[1:] for row in calls] == [
        ["erp", "customer_create", "POST /erp/customers", "422", "Permanent failure", "40 ms", "1"]
    ]
    assert "BODY-NOT-SHOWN" not in page
    steps = re.search(r'<ol class="next-steps">(.*?)</ol>', page, re.S)[1]
    assert [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", steps)] == (
        NEXT_STEPS[Category.MASTER_DATA]
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "who, forms",
    [
        ("auditor", []),
        ("sales_ops", ["retry", "assign", "comment"]),
        ("finance_ops", ["retry", "resolve", "ignore", "assign", "comment"]),
        ("data_steward", ["retry", "resolve", "ignore", "assign", "comment"]),
        ("integration_support", ["retry", "resolve", "ignore", "assign", "comment"]),
        (ADMIN, ["retry", "resolve", "ignore", "assign", "comment"]),
    ],
)
def test_detail_offers_exactly_the_actions_the_role_may_run(client, who, forms):
    # given
    exc = raise_exception()
    client.force_login(user_for(who))
    # when
    page = client.get(reverse("exception-detail", args=[exc.pk])).content.decode()
    # then
    assert re.findall(r'<form method="post" [^>]*data-action="(\w+)"', page) == forms


@pytest.mark.django_db
def test_detail_of_a_closed_exception_offers_no_actions(client):
    # given
    exc = raise_exception()
    exception_ignore(exception=exc, actor=Actor.system("worker"), reason="test order")
    client.force_login(user_for(ADMIN))
    # when
    page = client.get(reverse("exception-detail", args=[exc.pk])).content.decode()
    # then
    assert re.findall(r'data-action="(\w+)"', page) == ["comment"]
    assert "replay-create" not in page and 'data-link="replay"' not in page
    assert "ignored: test order" in page


@pytest.mark.django_db
@pytest.mark.parametrize("who, status", [(NO_ROLE, 403), (ADMIN, 404)])
def test_detail_is_refused_without_the_permission_and_404_when_unknown(client, who, status):
    # given
    client.force_login(user_for(who))
    exc = raise_exception() if who == NO_ROLE else None
    # when
    response = client.get(reverse("exception-detail", args=[exc.pk if exc else 999999]))
    # then
    assert response.status_code == status


# --- Query counts ---------------------------------------------------------------------------

# Session, user, the user's groups (role), user and group permissions, count, rows, saved
# views.
LIST_QUERIES = 8
# Session, user, exception with its order/run/step/assignee, groups, permissions (2), steps,
# outbound calls, comments, replays, people it may be assigned to, history; for a master-data
# exception, the duplicate pairs and the merges of the accounts it names.
DETAIL_QUERIES = 14


@pytest.mark.django_db
@pytest.mark.parametrize("params", [{}, {"view": "grouped"}])
def test_list_query_count_does_not_grow_with_rows(client, django_assert_num_queries, params):
    # given
    client.force_login(user_for("auditor"))
    for n in range(5):
        raise_exception(step=["check_quote", "create_customer"][n % 2], error_class=f"E{n}")
    url = reverse("exception-list")
    # when
    with django_assert_num_queries(LIST_QUERIES):
        five = client.get(url, params)
    for n in range(25):
        raise_exception(step=["check_quote", "create_customer"][n % 2], error_class=f"E{n + 5}")
    with django_assert_num_queries(LIST_QUERIES):
        thirty = client.get(url, params)
    # then
    assert (len(five.context["page"]), len(thirty.context["page"])) == (5, 30)


@pytest.mark.django_db
def test_detail_query_count_does_not_grow_with_calls_or_history(client, django_assert_num_queries):
    # given
    client.force_login(user_for("finance_ops"))
    exc = raise_exception()
    add_calls(exc.correlation_id, 2)
    url = reverse("exception-detail", args=[exc.pk])
    # when
    with django_assert_num_queries(DETAIL_QUERIES):
        few = client.get(url)
    add_calls(exc.correlation_id, 20)
    exception_retry(exception=exc, actor=person("sales_ops"), reason="again")
    with django_assert_num_queries(DETAIL_QUERIES):
        many = client.get(url)
    # then
    assert (len(few.context["calls"]), len(many.context["calls"])) == (2, 22)
    assert (len(few.context["history"]), len(many.context["history"])) == (1, 2)
