"""The deal timeline: one chronological story per order and contract, its payloads on
demand, and the actions taken from it (retry a step, hold/release, request a replay)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from core.audit import Actor
from exceptions.models import ExceptionState, OperationalException
from masterdata.services import records as md
from orchestration.models import InboundEvent, OutboundCall
from orchestration.workflows.models import StepRun, StepState
from q2c import services
from q2c.models import OrderState
from tests import factories
from tests.console.helpers import Clock, sign_in
from tests.exceptions.helpers import raise_exception


def story(response: Any) -> list[tuple[float, str, str, str, bool]]:
    """(minutes after the deal began, kind, title, actor, by an operator) per entry."""
    entries = response.context["timeline"].entries
    start = entries[0].at
    return [
        ((e.at - start).total_seconds() / 60, e.kind, e.title, e.actor, e.operator) for e in entries
    ]


def a_deal(clock: Clock, user: Any) -> dict[str, Any]:
    """An order received, announced by CPQ, validated by a person, failed at the ERP step
    (exception, hold), then an ERP call: one minute apart."""
    order = factories.order()
    clock.set(order.history.earliest("history_date").history_date)
    clock.advance(minutes=1)
    InboundEvent.objects.create(
        system="cpq", event_id="evt-1", event_type="quote.approved", received_at=clock.now,
        signature_valid=True, correlation_id=order.enterprise_id, raw_body='{"secret": 1}',
    )  # fmt: skip
    clock.advance(minutes=1)
    services.order_validate(order=order, actor=Actor.person(user), reason="checked by hand")
    clock.advance(minutes=1)
    exception = raise_exception(order=order)
    clock.advance(minutes=1)
    call = OutboundCall.objects.create(
        system="erp", operation="customer_upsert", method="POST", path="customers",
        status_code=503, outcome="retryable", latency_ms=120, attempt=2,
        correlation_id=order.enterprise_id, request_body='{"name": "Customer [redacted]"}',
        response_body="service busy", created_at=clock.now,
    )  # fmt: skip
    OutboundCall.objects.create(
        system="erp", operation="other_deal", method="GET", path="x", status_code=200,
        outcome="ok", latency_ms=5, correlation_id="ORD-999999", created_at=clock.now,
    )  # fmt: skip
    order.refresh_from_db()
    return {"order": order, "exception": exception, "call": call}


@pytest.mark.django_db
def test_order_timeline_tells_the_deal_in_order_with_every_source(client, clock, test_flow):
    # given
    user = sign_in(client, "sales_ops")
    deal = a_deal(clock, user)
    exc = deal["exception"].pk
    # when
    response = client.get(reverse("order-timeline", args=[deal["order"].enterprise_id]))
    # then
    assert response.status_code == 200
    assert story(response) == [
        (0.0, "transition", "order created (Received)", "worker", False),
        (0.0, "transition", "order changed", "worker", False),
        (1.0, "inbound", "cpq sent quote.approved", "cpq", False),
        (2.0, "transition", "order → Validated", "olivia", True),
        (3.0, "transition", "order → On hold", "worker", False),
        (3.0, "step", "step check_quote succeeded (attempt 1)", "default", False),
        (3.0, "step", "step create_customer failed (attempt 1)", "erp", False),
        (3.0, "exception", f"EXC-{exc} raised: master_data on erp / create_customer",
         "worker", False),
        (4.0, "call", "erp customer_upsert: POST customers", "erp", False),
    ]  # fmt: skip
    html = response.content.decode()
    assert "503 · 120 ms · attempt 2" in html
    assert "service busy" not in html  # payloads load on demand only
    assert [(s.name, s.state) for s in response.context["timeline"].steps] == [
        ("check_quote", "succeeded"),
        ("create_customer", "failed"),
        ("create_subscription", "pending"),
    ]


@pytest.mark.django_db
def test_timeline_shows_the_crosswalk_of_the_order_and_its_account(client):
    # given
    order = factories.order()
    actor = factories.actor()
    md.external_id_link(record=order, system="erp", object_type="sales_order",
                        external_id="SO-1", actor=actor, reason="t")  # fmt: skip
    md.external_id_link(record=order.account, system="crm", object_type="account",
                        external_id="001A", actor=actor, reason="t")  # fmt: skip
    md.external_id_link(record=factories.order(), system="erp", object_type="sales_order",
                        external_id="SO-2", actor=actor, reason="t")  # fmt: skip
    sign_in(client, "auditor")
    # when
    response = client.get(reverse("order-timeline", args=[order.enterprise_id]))
    # then
    assert sorted(
        (row.enterprise_id, row.system, row.external_id)
        for row in response.context["timeline"].crosswalk
    ) == sorted(
        [(order.account.enterprise_id, "crm", "001A"), (order.enterprise_id, "erp", "SO-1")]
    )


@pytest.mark.django_db
def test_timeline_query_count_does_not_grow_with_the_deal(
    client, clock, test_flow, django_assert_num_queries
):
    # given
    user = sign_in(client, "auditor")
    small = factories.order()
    deal = a_deal(clock, user)
    for n in range(20):
        OutboundCall.objects.create(
            system="erp", operation="poll", method="GET", path=f"p/{n}", status_code=200,
            outcome="ok", latency_ms=n, correlation_id=deal["order"].enterprise_id,
        )  # fmt: skip
    # Session, user, groups, user and group permissions; the order; its history, exception
    # history, steps, inbound events, outbound calls, contracts and crosswalk.
    queries = 13
    # when / then
    with django_assert_num_queries(queries):
        client.get(reverse("order-timeline", args=[small.enterprise_id]))
    with django_assert_num_queries(queries):
        big = client.get(reverse("order-timeline", args=[deal["order"].enterprise_id]))
    assert len(big.context["timeline"].entries) == 29


@pytest.mark.django_db
def test_contract_timeline_merges_its_versions_and_its_orders_deal(client, clock):
    # given
    order = factories.order()
    contract = factories.contract(account=order.account, order=order)
    clock.advance(minutes=1)
    services.contract_activate(contract=contract, actor=factories.actor(), reason="accepted")
    clock.advance(minutes=1)
    OutboundCall.objects.create(
        system="billing", operation="subscription_create", method="POST", path="subs",
        status_code=201, outcome="ok", latency_ms=40, correlation_id=order.enterprise_id,
        created_at=clock.now,
    )  # fmt: skip
    sign_in(client, "finance_ops")
    # when
    response = client.get(reverse("contract-timeline", args=[contract.enterprise_id]))
    # then
    kinds_titles = [(e.kind, e.title) for e in response.context["timeline"].entries]
    assert kinds_titles[-3:] == [
        ("transition", "contract → Active"),
        ("transition", "version 1 (initial) active"),
        ("call", "billing subscription_create: POST subs"),
    ]
    assert ("transition", "contract created (Pending activation)") in kinds_titles
    assert f'<a href="/orders/{order.enterprise_id}/timeline/">' in response.content.decode()


@pytest.mark.django_db
def test_unknown_record_is_404(client):
    # given
    sign_in(client, "sales_ops")
    # when / then
    assert client.get(reverse("order-timeline", args=["ORD-404404"])).status_code == 404
    assert client.get(reverse("contract-timeline", args=["CTR-404404"])).status_code == 404


# --- Payload on demand ----------------------------------------------------------------------


@pytest.mark.django_db
def test_payload_loads_as_an_htmx_partial_for_who_may_read_outbound_calls(client, clock, test_flow):
    # given
    user = sign_in(client, "integration_support")
    deal = a_deal(clock, user)
    url = reverse("outbound-call-payload", args=[deal["call"].pk])
    timeline = client.get(reverse("order-timeline", args=[deal["order"].enterprise_id]))
    # when
    partial = client.get(url, headers={"HX-Request": "true"})
    full = client.get(url)
    # then
    assert f'<a href="{url}" hx-get="{url}" hx-target="#payload-{deal["call"].pk}"' in (
        timeline.content.decode()
    )
    assert partial.content.decode().strip() == (
        '<div class="payload"><h3>Request</h3><pre>{&quot;name&quot;: &quot;Customer '
        "[redacted]&quot;}</pre><h3>Response</h3><pre>service busy</pre></div>"
    )
    assert full.content.decode().startswith("<!doctype html>")
    assert "<pre>service busy</pre>" in full.content.decode()


@pytest.mark.django_db
def test_payload_is_refused_to_a_role_without_outbound_call_access(client, clock, test_flow):
    # given
    user = sign_in(client, "sales_ops")
    deal = a_deal(clock, user)
    # when
    timeline = client.get(reverse("order-timeline", args=[deal["order"].enterprise_id]))
    payload = client.get(reverse("outbound-call-payload", args=[deal["call"].pk]))
    # then
    assert payload.status_code == 403
    assert "show payload" not in timeline.content.decode()


# --- Actions --------------------------------------------------------------------------------


def order_history(order: Any) -> list[tuple[str, str | None, str | None]]:
    return list(
        order.history.order_by("history_id").values_list(
            "state", "history_user__username", "history_change_reason"
        )
    )


def exception_history(exc: OperationalException) -> list[tuple[str, str | None, str | None]]:
    return list(
        exc.history.order_by("history_id").values_list(
            "state", "history_user__username", "history_change_reason"
        )
    )


@pytest.mark.django_db
def test_retry_from_the_timeline_retries_the_exception_and_releases_the_order(client, test_flow):
    # given
    exc = raise_exception()
    order, step = exc.order, exc.step_run
    user = sign_in(client, "sales_ops")
    # when
    response = client.post(
        reverse("order-step-retry", args=[order.enterprise_id, step.pk]),
        {"reason": "tax id corrected in CRM"},
    )
    # then
    assert (response.status_code, response["Location"]) == (
        302,
        f"/orders/{order.enterprise_id}/timeline/",
    )
    exc.refresh_from_db()
    step.refresh_from_db()
    order.refresh_from_db()
    assert (exc.state, step.state, order.state) == (
        ExceptionState.RETRYING,
        StepState.QUEUED,
        OrderState.RECEIVED,
    )
    assert exception_history(exc)[-1] == ("retrying", user.username, "tax id corrected in CRM")
    assert order_history(order)[-1] == ("received", "worker", f"olivia retries EXC-{exc.pk}")


@pytest.mark.django_db
@pytest.mark.parametrize("role, status", [("auditor", 403), ("sales_ops", 302)])
def test_retry_needs_the_permission_and_a_reason(client, test_flow, role, status):
    # given
    exc = raise_exception()
    order, step = exc.order, exc.step_run
    before = (exception_history(exc), order_history(order))
    sign_in(client, role)
    # when
    response = client.post(
        reverse("order-step-retry", args=[order.enterprise_id, step.pk]), {"reason": " "}
    )
    # then
    assert response.status_code == status
    exc.refresh_from_db()
    step.refresh_from_db()
    assert (exc.state, step.state) == (ExceptionState.OPEN, StepState.FAILED)
    assert (exception_history(exc), order_history(order)) == before
    if status == 302:
        messages = [m.message for m in client.get(response["Location"]).context["messages"]]
        assert messages == ["a reason is required to retry"]


@pytest.mark.django_db
def test_retry_refuses_a_step_of_another_order(client, test_flow):
    # given
    exc = raise_exception()
    other = factories.order()
    sign_in(client, "sales_ops")
    # when
    response = client.post(
        reverse("order-step-retry", args=[other.enterprise_id, exc.step_run.pk]),
        {"reason": "x"},
    )
    # then
    assert response.status_code == 404
    exc.refresh_from_db()
    assert exc.state == ExceptionState.OPEN


@pytest.mark.django_db
def test_retry_of_a_failed_step_without_an_open_exception_goes_to_the_engine(client, test_flow):
    # given
    exc = raise_exception()
    services_actor = Actor.system("worker")
    from exceptions.services import exception_ignore

    exception_ignore(exception=exc, actor=services_actor, reason="handled elsewhere")
    step = exc.step_run
    sign_in(client, "sales_ops")
    # when
    response = client.post(
        reverse("order-step-retry", args=[exc.order.enterprise_id, step.pk]),
        {"reason": "run it again"},
    )
    # then
    assert response.status_code == 302
    step.refresh_from_db()
    exc.refresh_from_db()
    # the attempt it made is kept, and it gets a fresh budget on top
    assert (step.state, step.attempts, step.max_attempts, exc.state) == (
        StepState.QUEUED, 1, 6, ExceptionState.IGNORED
    )  # fmt: skip


@pytest.mark.django_db
def test_hold_and_release_from_the_timeline_come_back_to_it(client):
    # given
    order = factories.order()
    user = sign_in(client, "sales_ops")
    url = reverse("order-hold", args=[order.enterprise_id])
    timeline_url = f"/orders/{order.enterprise_id}/timeline/"
    # when
    held = client.post(url, {"reason": "customer disputes terms", "next": "timeline"})
    released = client.post(url, {"reason": "terms agreed", "next": "timeline"})
    # then
    assert [(r.status_code, r["Location"]) for r in (held, released)] == [
        (302, timeline_url),
        (302, timeline_url),
    ]
    assert order_history(order)[-2:] == [
        ("on_hold", user.username, "customer disputes terms"),
        ("received", user.username, "terms agreed"),
    ]
    page = client.get(timeline_url).content.decode()
    assert '<input type="hidden" name="next" value="timeline">' in page


@pytest.mark.django_db
@pytest.mark.parametrize("role, granted", [("sales_ops", True), ("auditor", False)])
def test_replay_links_are_shown_only_with_the_request_replay_permission(
    client, test_flow, role, granted
):
    # given: sales ops may request replays; auditors read the same timeline without them
    exc = raise_exception()
    user = sign_in(client, role)
    assert user.has_perm("exceptions.request_replay") is granted
    # when
    html = client.get(reverse("order-timeline", args=[exc.order.enterprise_id])).content.decode()
    # then
    steps = list(StepRun.objects.filter(run=exc.workflow_run).order_by("position"))
    links = re.findall(r'href="(/replays/new/\?[^"]+)"', html)
    expected = [f"/replays/new/?step_run={steps[0].pk}",
                f"/replays/new/?workflow_run={exc.workflow_run_id}",
                f"/replays/new/?step_run={steps[1].pk}",
                f"/replays/new/?step_run={steps[2].pk}"]  # fmt: skip
    assert links == (expected if granted else [])


@pytest.mark.django_db
def test_timeline_needs_the_records_view_permission(client):
    # given
    order = factories.order()
    contract = factories.contract()
    sign_in(client, "data_steward")
    # when / then
    assert client.get(reverse("order-timeline", args=[order.enterprise_id])).status_code == 403
    assert (
        client.get(reverse("contract-timeline", args=[contract.enterprise_id])).status_code == 403
    )


@pytest.mark.django_db
def test_timelines_link_to_the_audit_trail_filtered_to_their_record(client):
    # given
    order = factories.order()
    contract = factories.contract(account=order.account, order=order)
    sign_in(client, "auditor")
    # when
    order_page = client.get(reverse("order-timeline", args=[order.enterprise_id]))
    contract_page = client.get(reverse("contract-timeline", args=[contract.enterprise_id]))
    history = client.get(f"/audit/?model=q2c.contract&record={contract.enterprise_id}")
    # then
    assert (
        f'<a href="/audit/?model=q2c.order&amp;record={order.enterprise_id}">'
        f"who changed what on {order.enterprise_id}</a>"
    ) in order_page.content.decode()
    assert (
        f'<a href="/audit/?model=q2c.contract&amp;record={contract.enterprise_id}">'
        f"who changed what on {contract.enterprise_id}</a>"
    ) in contract_page.content.decode()
    assert history.status_code == 200
    assert {e.record for e in history.context["page"].entries} == {contract.enterprise_id}
