"""The dashboard: every figure exact, each one linking to the list that shows its rows,
sections by role, the percentile fallback for databases without percentile_cont, and a
query count that does not grow with the data."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.urls import reverse

from console.selectors import dashboard
from core.problems import Category
from orchestration.models import OutboundCall
from orchestration.workflows.models import CircuitBreaker
from q2c import services
from q2c.models import Order
from tests import factories
from tests.console.helpers import Clock, listed, sign_in
from tests.exceptions.helpers import raise_exception

actor = factories.actor

ORDER_FLOW = ("order_validate", "order_submit_to_erp", "order_accept",
              "order_start_provisioning", "order_activate")  # fmt: skip


def activate(order: Order) -> Order:
    for step in ORDER_FLOW:
        getattr(services, step)(order=order, actor=actor(), reason="flow")
    order.refresh_from_db()
    return order


def call(system: str, latency: int, status: int, at: dt.datetime) -> OutboundCall:
    outcome = "ok" if status < 400 else "retryable"
    return OutboundCall.objects.create(
        system=system, operation="op", method="POST", path="x", status_code=status,
        outcome=outcome, latency_ms=latency, created_at=at,
    )  # fmt: skip


def seed(clock: Clock) -> dict[str, Any]:
    """Two days of a small business, told by the clock."""
    received = factories.order()
    validated = factories.order()
    fast, slow, fresh = factories.order(), factories.order(), factories.order()
    t0 = max(o.state_changed_at for o in (received, validated, fast, slow, fresh))
    clock.set(t0)
    held = raise_exception(category=Category.MASTER_DATA)  # owner data_steward, 24 h SLA
    clock.set(t0 + dt.timedelta(hours=1))
    fast = activate(fast)
    clock.set(t0 + dt.timedelta(hours=46))
    services.order_validate(order=validated, actor=actor(), reason="checked")
    clock.set(t0 + dt.timedelta(hours=48))
    slow = activate(slow)
    services.order_validate(order=fresh, actor=actor(), reason="checked")
    downstream = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    services.order_release(order=downstream.order, actor=actor(), reason="worked around")
    now = clock.now
    for latency, status in ((100, 200), (200, 503), (300, 429), (400, 200)):
        call("erp", latency, status, now - dt.timedelta(minutes=10))
    call("erp", 9000, 500, now - dt.timedelta(minutes=61))  # older than the hour
    call("billing", 50, 200, now - dt.timedelta(minutes=1))
    CircuitBreaker.objects.update_or_create(
        system="erp", defaults={"state": "open", "consecutive_failures": 5}
    )
    factories.invoice(account=held.order.account, order=held.order)
    factories.invoice()
    return {"received": received, "validated": validated, "held": held, "fast": fast,
            "slow": slow, "downstream": downstream}  # fmt: skip


def stuck_table(response: Any) -> dict[str, list[int]]:
    return {
        row.key: [cell.count for cell in row.cells] for row in response.context["stuck"]["rows"]
    }


@pytest.mark.django_db
def test_dashboard_figures_are_exact(client, clock, test_flow):
    # given
    deal = seed(clock)
    sign_in(client, "integration_support")
    # when
    response = client.get(reverse("dashboard"))
    # then
    assert response.status_code == 200
    ctx = response.context
    assert stuck_table(response) == {
        "received": [0, 0, 0, 1, 0],  # 48 h in received
        "validated": [0, 1, 0, 0, 0],  # 2 h in validated
        "submitted_to_erp": [0, 0, 0, 0, 0],
        "accepted": [0, 0, 0, 0, 0],
        "provisioning": [0, 0, 0, 0, 0],
        "on_hold": [0, 0, 0, 1, 0],  # held 48 h by its exception
    }
    assert (ctx["stuck"]["total"], ctx["stuck_contracts"]) == (3, 0)
    exceptions = {row.key: [c.count for c in row.cells] for row in ctx["exceptions"]["rows"]}
    assert exceptions == {
        "sales_ops": [0, 0, 0, 0, 0],
        "finance_ops": [0, 0, 0, 0, 0],
        "data_steward": [0, 0, 0, 1, 0],
        "integration_support": [1, 0, 0, 0, 0],
    }
    assert ctx["exceptions"]["overdue"] == {
        "sales_ops": 0, "finance_ops": 0, "data_steward": 1, "integration_support": 0,
    }  # fmt: skip
    health = {
        h.system: (h.circuit, h.calls, h.errors, h.throttled, h.p95_ms) for h in ctx["health"]
    }
    assert health == {
        "crm": ("closed", 0, 0, 0, None),
        "cpq": ("closed", 0, 0, 0, None),
        "billing": ("closed", 1, 0, 0, 50.0),
        "erp": ("open", 4, 2, 1, 385.0),
        "tax": ("closed", 0, 0, 0, None),
        "payments": ("closed", 0, 0, 0, None),
    }
    cycles = [(c.days, c.orders) for c in ctx["cycle_times"]]
    fast_s = (deal["fast"].activated_at - deal["fast"].created_at).total_seconds()
    slow_s = (deal["slow"].activated_at - deal["slow"].created_at).total_seconds()
    assert cycles == [(7, 2), (30, 2)]
    for c in ctx["cycle_times"]:
        assert c.p50_seconds == pytest.approx((fast_s + slow_s) / 2, abs=1e-3)
        assert c.p95_seconds == pytest.approx(fast_s + 0.95 * (slow_s - fast_s), abs=1e-3)
    rate = ctx["invoice_rate"]
    assert (rate.invoices, rate.with_exception) == (2, 1)
    html = response.content.decode()
    assert '<p class="big" data-figure="invoice-rate">50 %</p>' in html
    assert '<td class="num" data-figure="stuck-orders">3</td>' in html


@pytest.mark.django_db
def test_each_stuck_figure_links_to_a_list_of_exactly_its_orders(client, clock, test_flow):
    # given
    deal = seed(clock)
    sign_in(client, "sales_ops")
    response = client.get(reverse("dashboard"))
    html = response.content.decode()
    # when
    found = {}
    for row in response.context["stuck"]["rows"]:
        for cell in row.cells:
            if cell.count:
                assert f'<a href="{cell.href.replace("&", "&amp;")}">' in html
                found[cell.href] = listed(client.get(cell.href))
    everything = listed(client.get("/orders/?stuck=1&sort=id"))
    # then
    assert found == {
        "/orders/?state=received&stuck=1&age=1d-7d": [deal["received"].enterprise_id],
        "/orders/?state=validated&stuck=1&age=1h-4h": [deal["validated"].enterprise_id],
        "/orders/?state=on_hold&stuck=1&age=1d-7d": [deal["held"].order.enterprise_id],
    }
    assert sorted(everything) == sorted(eid for eids in found.values() for eid in eids)


@pytest.mark.django_db
def test_dashboard_draws_its_charts_as_inline_svg_with_links(client, clock, test_flow):
    # given
    seed(clock)
    sign_in(client, "auditor")
    # when
    html = client.get(reverse("dashboard")).content.decode()
    # then
    assert html.count('<svg class="chart"') == 2
    segments = re.findall(r'<a href="([^"]+)"><rect class="b(\d)"', html)
    assert segments[:3] == [
        ("/orders/?state=received&amp;stuck=1&amp;age=1d-7d", "3"),
        ("/orders/?state=validated&amp;stuck=1&amp;age=1h-4h", "1"),
        ("/orders/?state=on_hold&amp;stuck=1&amp;age=1d-7d", "3"),
    ]
    assert "<script" not in html.split("</head>", 1)[1]


RECON = {"reconciliation-effort"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, sections",
    [
        ("sales_ops", {"sla", "cycle", "stuck", "exceptions"}),
        ("finance_ops", {"sla", "cycle", "stuck", "exceptions", "invoice-rate", *RECON}),
        (
            "integration_support",
            {"sla", "cycle", "stuck", "exceptions", "invoice-rate", "health", *RECON},
        ),
        ("auditor", {"sla", "cycle", "stuck", "exceptions", "invoice-rate", "health", *RECON}),
        ("admin", {"sla", "cycle", "stuck", "exceptions", "invoice-rate", "health", *RECON}),
    ],
)
def test_each_role_sees_the_sections_it_may_read(client, role, sections):
    # given
    sign_in(client, role)
    # when
    html = client.get(reverse("dashboard")).content.decode()
    # then
    assert set(re.findall(r'<section class="card[^"]*" id="([a-z-]+)">', html)) == sections


@pytest.mark.django_db
def test_dashboard_query_count_does_not_grow_with_the_data(
    client, clock, test_flow, django_assert_num_queries
):
    # given
    user = sign_in(client, "integration_support")
    # Session, user, user and group permissions, groups (role); stuck orders, cycle times,
    # stuck contracts, exceptions, circuit breakers, outbound calls, invoices; reconciliation
    # effort (open drift by age, its value, closed in 30 and in 90 days).
    queries = 16
    with django_assert_num_queries(queries):
        client.get(reverse("dashboard"))
    seed(clock)
    client.force_login(user)  # the clock moved two days: a new session
    if not dashboard.native_percentiles():
        # SQLite (the demo): a count and a two-row read per percentile: erp and billing
        # p95, then p50 and p95 of two cycle-time windows.
        queries += 2 * 2 + 2 * 2 * 2
    # when / then
    with django_assert_num_queries(queries):
        response = client.get(reverse("dashboard"))
    assert response.context["stuck"]["total"] == 3


@pytest.mark.django_db
def test_percentile_fallback_matches_percentile_cont(clock, monkeypatch):
    # given
    now = clock.now
    for latency in (7, 1, 90, 40, 40, 12, 300):
        call("tax", latency, 200, now - dt.timedelta(minutes=5))
    native = {h.system: h.p95_ms for h in dashboard.connector_health(now=now)}
    # when
    monkeypatch.setattr(dashboard, "native_percentiles", lambda: False)
    fallback = {h.system: h.p95_ms for h in dashboard.connector_health(now=now)}
    # then (sorted 1 7 12 40 40 90 300: position 5.7 -> 90 + 0.7 * 210)
    assert fallback["tax"] == pytest.approx(237.0)
    assert native["tax"] == pytest.approx(237.0)


@pytest.mark.django_db
def test_cycle_time_fallback_matches_percentile_cont(clock, monkeypatch):
    # given
    orders = [factories.order() for _ in range(3)]
    start = max(o.created_at for o in orders)
    for hours, order in zip((1, 2, 10), orders, strict=True):
        clock.set(start + dt.timedelta(hours=hours))
        activate(order)
    native = dashboard.cycle_times(now=clock.now)
    # when
    monkeypatch.setattr(dashboard, "native_percentiles", lambda: False)
    fallback = dashboard.cycle_times(now=clock.now)
    # then
    assert [(c.orders, round(c.p50_seconds), round(c.p95_seconds)) for c in fallback] == [
        (c.orders, round(c.p50_seconds), round(c.p95_seconds)) for c in native
    ]
    assert native[0].orders == 3


@pytest.mark.django_db
def test_empty_dashboard_shows_dashes_not_errors(client):
    # given
    sign_in(client, "auditor")
    # when
    response = client.get(reverse("dashboard"))
    # then
    assert [(c.days, c.orders, c.p50_seconds) for c in response.context["cycle_times"]] == [
        (7, 0, None),
        (30, 0, None),
    ]
    assert response.context["invoice_rate"].rate is None
    assert '<p class="big" data-figure="invoice-rate">—</p>' in response.content.decode()
