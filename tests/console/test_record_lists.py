"""The order and contract lists: filters, stuck at the SLA boundary, search, sort, paging,
htmx partials and pinned query counts."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from console.selectors import records as selectors
from core.env import envminutes
from masterdata.services import records as md
from q2c import services
from q2c.models import Order
from tests import factories
from tests.console.helpers import listed, order_links, sign_in
from tests.exceptions.helpers import raise_exception
from tests.q2c.helpers import quote

actor = factories.actor


# --- Stuck ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "in_state, stuck",
    [
        (dt.timedelta(minutes=14, seconds=59), False),
        (dt.timedelta(minutes=15), False),
        (dt.timedelta(minutes=15, microseconds=1), True),
        (dt.timedelta(days=3), True),
    ],
)
def test_an_order_is_stuck_only_once_it_is_beyond_its_states_sla(client, clock, in_state, stuck):
    # given (received: 15 minutes by default)
    order = factories.order()
    clock.set(order.state_changed_at + in_state)
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {"stuck": "1"})
    everything = client.get(reverse("order-list"))
    # then
    assert listed(response) == ([order.enterprise_id] if stuck else [])
    assert everything.context["rows"] == [(order, stuck)]
    assert ('<span class="badge bad">stuck</span>' in everything.content.decode()) is stuck


@pytest.mark.django_db
def test_stuck_uses_each_states_own_sla_and_never_a_state_without_one(client, clock, settings):
    # given
    settings.ORDER_STATE_SLA_MINUTES = {"received": 10, "validated": 60}
    received = factories.order()
    validated = factories.order()
    services.order_validate(order=validated, actor=actor(), reason="checked")
    active = factories.order()
    for step in ("order_validate", "order_submit_to_erp", "order_accept",
                 "order_start_provisioning", "order_activate"):  # fmt: skip
        getattr(services, step)(order=active, actor=actor(), reason="flow")
    clock.advance(minutes=30)
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {"stuck": "1"})
    # then
    assert listed(response) == [received.enterprise_id]
    clock.advance(minutes=31)
    later = client.get(reverse("order-list"), {"stuck": "1", "sort": "id"})
    assert listed(later) == [received.enterprise_id, validated.enterprise_id]


@pytest.mark.django_db
def test_age_filter_lists_orders_by_time_in_state(client, clock):
    # given
    fresh = factories.order()
    clock.set(fresh.state_changed_at + dt.timedelta(minutes=30))
    two_hours = factories.order()
    services.order_validate(order=two_hours, actor=actor(), reason="checked")
    clock.advance(hours=2)
    sign_in(client, "sales_ops")
    # when
    young = client.get(reverse("order-list"), {"age": "lt1h"})
    middle = client.get(reverse("order-list"), {"age": "1h-4h"})
    old = client.get(reverse("order-list"), {"age": "gt7d"})
    # then (fresh entered its state 2.5 h ago, two_hours 2 h ago)
    assert listed(young) == []
    assert sorted(listed(middle)) == sorted([fresh.enterprise_id, two_hours.enterprise_id])
    assert listed(old) == []


def test_sla_minutes_from_the_environment_override_only_the_states_named(monkeypatch):
    # given
    monkeypatch.setenv("ORDER_STATE_SLA_MINUTES", "received=5, on_hold=120")
    # when
    found = envminutes("ORDER_STATE_SLA_MINUTES", {"received": 15, "validated": 15},
                       keys=["received", "validated", "on_hold"])  # fmt: skip
    # then
    assert found == {"received": 5, "validated": 15, "on_hold": 120}


@pytest.mark.parametrize(
    "value, message",
    [
        ("active=5", "'active=5' is not key=minutes with a key among received, validated"),
        ("received", "'received' is not key=minutes with a key among received, validated"),
        ("received=soon", "'soon' is not whole minutes"),
        ("received=0", "received must be at least 1 minute"),
    ],
)
def test_bad_sla_minutes_stop_the_start(monkeypatch, value, message):
    # given
    monkeypatch.setenv("ORDER_STATE_SLA_MINUTES", value)
    # when
    with pytest.raises(ImproperlyConfigured) as raised:
        envminutes("ORDER_STATE_SLA_MINUTES", {"received": 15}, keys=["received", "validated"])
    # then
    assert str(raised.value) == f"ORDER_STATE_SLA_MINUTES: {message}"


# --- Filters and search ---------------------------------------------------------------------


@pytest.fixture
def two_entities() -> dict[str, Any]:
    gb = factories.legal_entity(code="GB1", currency="GBP")
    de = factories.legal_entity(code="DE1", country="DE", currency="EUR")
    acme = factories.account(legal_name="Acme Widgets GmbH", legal_entity=de, currency="EUR")
    brit = factories.account(legal_name="Britannia Ltd", legal_entity=gb)
    return {
        "acme": acme,
        "brit": brit,
        "acme_eur": factories.order(account=acme),
        "brit_gbp": factories.order(account=brit),
        "brit_usd": factories.order(account=brit, currency="USD"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, expected",
    [
        ({"legal_entity": "DE1"}, ["acme_eur"]),
        ({"legal_entity": "GB1"}, ["brit_gbp", "brit_usd"]),
        ({"currency": "USD"}, ["brit_usd"]),
        ({"currency": "GBP", "legal_entity": "GB1"}, ["brit_gbp"]),
        ({"currency": "usd"}, ["acme_eur", "brit_gbp", "brit_usd"]),  # not a code: ignored
        ({"legal_entity": "NOPE"}, []),
        ({"state": "received", "legal_entity": "DE1"}, ["acme_eur"]),
        ({"state": "validated"}, []),
    ],
)
def test_order_filters_list_exactly_the_matching_orders(client, two_entities, params, expected):
    # given
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {**params, "sort": "id"})
    # then
    assert listed(response) == [two_entities[name].enterprise_id for name in expected]


@pytest.mark.django_db
def test_account_filter_takes_the_accounts_enterprise_id(client, two_entities):
    # given
    sign_in(client, "sales_ops")
    # when
    response = client.get(
        reverse("order-list"), {"account": two_entities["brit"].enterprise_id, "sort": "id"}
    )
    # then
    assert listed(response) == [
        two_entities["brit_gbp"].enterprise_id,
        two_entities["brit_usd"].enterprise_id,
    ]


@pytest.mark.django_db
def test_system_filter_lists_orders_with_an_open_exception_on_that_system(client, test_flow):
    # given
    on_erp = raise_exception(step="create_customer").order
    on_billing = raise_exception(step="create_subscription").order
    factories.order()  # no exception
    sign_in(client, "integration_support")
    # when
    erp = client.get(reverse("order-list"), {"system": "erp"})
    billing = client.get(reverse("order-list"), {"system": "billing"})
    tax = client.get(reverse("order-list"), {"system": "tax"})
    # then
    assert (listed(erp), listed(billing), listed(tax)) == (
        [on_erp.enterprise_id],
        [on_billing.enterprise_id],
        [],
    )


@pytest.fixture
def searchable() -> dict[str, Any]:
    """Five orders, each findable by a different business key only."""
    by_quote = factories.order(quote=quote(cpq_quote_id="a0Q5e00000XYZ"))
    by_external = factories.order()
    md.external_id_link(record=by_external, system="erp", object_type="sales_order",
                        external_id="SO-88121", actor=actor(), reason="test")  # fmt: skip
    by_account_external = factories.order()
    md.external_id_link(record=by_account_external.account, system="crm", object_type="account",
                        external_id="001CRM777", actor=actor(), reason="test")  # fmt: skip
    by_invoice = factories.order()
    factories.invoice(account=by_invoice.account, order=by_invoice, number="BILL-2026-0042")
    by_name = factories.order(account=factories.account(legal_name="Zebra Logistics Oy"))
    return {
        "quote": by_quote,
        "external": by_external,
        "account_external": by_account_external,
        "invoice": by_invoice,
        "name": by_name,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, expected",
    [
        ("a0Q5e00000XYZ", "quote"),
        ("SO-88121", "external"),
        ("001CRM777", "account_external"),
        ("BILL-2026-0042", "invoice"),
        ("zebra log", "name"),
        ("  Zebra  ", "name"),
        ("SO-8812", None),  # external ids match exactly
    ],
)
def test_search_finds_an_order_by_any_business_key(client, searchable, query, expected):
    # given
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {"q": query})
    # then
    assert listed(response) == ([searchable[expected].enterprise_id] if expected else [])


@pytest.mark.django_db
def test_search_by_enterprise_id_ignores_case(client):
    # given
    factories.order()
    wanted = factories.order()
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {"q": wanted.enterprise_id.lower()})
    # then
    assert listed(response) == [wanted.enterprise_id]


# --- Sorting and paging ---------------------------------------------------------------------


@pytest.mark.django_db
def test_sorts_order_the_rows(client, clock):
    # given
    small = factories.order(lines=[factories.line(quantity=Decimal("1"))])
    clock.advance(minutes=5)
    big = factories.order(lines=[factories.line(quantity=Decimal("100"))])
    services.order_validate(order=small, actor=actor(), reason="checked")  # small: newest state
    sign_in(client, "sales_ops")
    # when
    results = {
        sort: listed(client.get(reverse("order-list"), {"sort": sort}))
        for sort in ("-created", "created", "in_state", "-total", "total", "id", "bogus")
    }
    # then
    s, b = small.enterprise_id, big.enterprise_id
    assert results == {
        "-created": [b, s],
        "created": [s, b],
        "in_state": [b, s],
        "-total": [b, s],
        "total": [s, b],
        "id": [s, b],
        "bogus": [b, s],
    }


@pytest.mark.django_db
def test_paging_keeps_the_filters_in_its_links(client, two_entities):
    # given
    brit = two_entities["brit"]
    for _ in range(50):
        factories.order(account=brit)
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {"legal_entity": "GB1", "sort": "id"})
    second = client.get(reverse("order-list"), {"legal_entity": "GB1", "sort": "id", "page": 2})
    # then
    html = response.content.decode()
    link = "/orders/?legal_entity=GB1&amp;sort=id&amp;page=2"
    assert f'<a href="{link}" hx-get="{link}" hx-target="#rows"' in html
    assert "page 1 of 2" in html
    assert (len(listed(response)), len(listed(second))) == (50, 2)
    assert (
        listed(second)
        == sorted(Order.objects.filter(account=brit).values_list("enterprise_id", flat=True))[50:]
    )


@pytest.mark.django_db
def test_htmx_request_gets_the_filtered_rows_partial(client, two_entities):
    # given
    sign_in(client, "sales_ops")
    # when
    response = client.get(
        reverse("order-list"), {"legal_entity": "DE1"}, headers={"HX-Request": "true"}
    )
    # then
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="rows">')
    assert "<form" not in html and "<body" not in html
    assert order_links(html) == [two_entities["acme_eur"].enterprise_id]


# --- Query counts ---------------------------------------------------------------------------

# Session, user, groups (role), user and group permissions, count, rows, legal entities, the
# person's saved views of the list (under the filter bar: not in an htmx swap of the rows).
FULL_PAGE = 9
ROWS_ONLY = FULL_PAGE - 2
BRIT = "<the Britannia account>"
# The search resolves crosswalk ids, matching accounts, then the matching ids first.
SEARCH = 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, htmx, queries, rows",
    [
        ({}, False, FULL_PAGE, 13),
        ({}, True, ROWS_ONLY, 13),
        ({"legal_entity": "GB1", "currency": "GBP", "age": "lt1h", "sort": "in_state",
          "state": "received", "account": BRIT}, False, FULL_PAGE, 11),
        ({"q": "Britannia", "account": BRIT}, False, FULL_PAGE + SEARCH, 12),
        ({"q": "Britannia"}, True, ROWS_ONLY + SEARCH, 12),
        # nothing matches: no page of rows to read
        ({"stuck": "1", "system": "erp"}, False, FULL_PAGE - 1, 0),
    ],
)  # fmt: skip
def test_order_list_query_count_is_pinned_whatever_the_filters(
    client, django_assert_num_queries, two_entities, params, htmx, queries, rows
):
    # given
    for _ in range(10):
        factories.order(account=two_entities["brit"])
    sign_in(client, "auditor")
    headers = {"HX-Request": "true"} if htmx else {}
    brit = two_entities["brit"].enterprise_id
    params = {key: brit if value == BRIT else value for key, value in params.items()}
    # when
    with django_assert_num_queries(queries):
        response = client.get(reverse("order-list"), params, headers=headers)
    # then
    assert response.status_code == 200
    assert len(listed(response)) == rows


@pytest.mark.django_db
def test_contract_list_query_count_is_pinned_with_a_search(client, django_assert_num_queries):
    # given
    account = factories.account(legal_name="Britannia Ltd")
    for _ in range(10):
        factories.contract(account=account)
    sign_in(client, "auditor")
    # when / then
    with django_assert_num_queries(FULL_PAGE + SEARCH):
        response = client.get(
            reverse("contract-list"), {"q": "britannia", "state": "pending_activation"}
        )
    assert len(listed(response)) == 10


# --- Contracts ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_contracts_filter_by_stuck_entity_and_search_by_their_orders_keys(client, clock):
    # given (pending activation: 24 h by default)
    order = factories.order(quote=quote(cpq_quote_id="a0Q-CONTRACT-1"))
    from_order = factories.contract(account=order.account, order=order)
    active = factories.contract()
    services.contract_activate(contract=active, actor=actor(), reason="go")
    other = factories.contract()
    clock.set(other.state_changed_at + dt.timedelta(hours=25))
    sign_in(client, "finance_ops")
    # when
    stuck = client.get(reverse("contract-list"), {"stuck": "1", "sort": "id"})
    by_quote = client.get(reverse("contract-list"), {"q": "a0Q-CONTRACT-1"})
    by_order = client.get(reverse("contract-list"), {"q": order.enterprise_id})
    by_entity = client.get(reverse("contract-list"), {"legal_entity": active.legal_entity.code})
    # then
    assert listed(stuck) == [from_order.enterprise_id, other.enterprise_id]
    assert listed(by_quote) == [from_order.enterprise_id]
    assert listed(by_order) == [from_order.enterprise_id]
    assert listed(by_entity) == [active.enterprise_id]


@pytest.mark.django_db
def test_selector_stuck_boundary_is_exact(clock):
    # given
    order = factories.order()
    sla = dt.timedelta(minutes=15)
    # when
    at_boundary = selectors.order_list(
        filters=selectors.RecordFilters(stuck=True), now=order.state_changed_at + sla
    )
    after = selectors.order_list(
        filters=selectors.RecordFilters(stuck=True),
        now=order.state_changed_at + sla + dt.timedelta(microseconds=1),
    )
    # then
    assert (list(at_boundary), list(after)) == ([], [order])


@pytest.mark.django_db
def test_a_held_order_shows_its_open_error_and_its_unresolved_customer(client, test_flow):
    # given: an order held on an exception before its customer was resolved
    from exceptions.models import OperationalException
    from tests.exceptions.helpers import GOOD_CUSTOMER, q2c_run, run_through

    order, run = q2c_run(customer_snapshot={**GOOD_CUSTOMER, "email": "ap at harbour"})
    run_through(run, "resolve_customer")
    exc = OperationalException.objects.get(workflow_run=run)
    sign_in(client, "sales_ops")
    # when
    response = client.get(reverse("order-list"), {"state": "on_hold"})
    # then
    page = response.content.decode()
    row = re.search(rf"<tr[^>]*><td><a[^>]*>{order.enterprise_id}</a>.*?</tr>", page, re.S)
    assert row is not None
    assert f'<a class="open-error" href="/exceptions/{exc.pk}/"' in row[0]
    assert "resolve_customer: customer cannot be created" in row[0]
    assert "unresolved: Harbour Analytics Ltd" in row[0]
