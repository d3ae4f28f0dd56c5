"""Quote to cash under the sandbox's faults, with real workers, the live webhook endpoint and
the sandbox over HTTP. Each test ends with exactly one downstream record per canonical record
and nothing lost: every approved quote has one order, active or (where the test means it) on
hold behind a visible open exception."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.utils import timezone

from core.audit import Actor
from core.identifiers import format_identifier
from core.models import IdentifierCounter
from core.records import LineKind
from exceptions.models import ExceptionState, OperationalException
from exceptions.services import exception_retry
from masterdata.models import ExternalId
from masterdata.services import records as md
from orchestration.events.services import inbound_events_sweep
from orchestration.events.signatures import SIGNATURE_HEADER, signature_header
from orchestration.models import InboundEvent, InboundStatus, OutboundCall, OutboundOutcome
from orchestration.workflows import engine
from orchestration.workflows.models import StepRun, StepState, WorkflowRun
from q2c.models import Invoice, Order, OrderState
from sandbox.config import default_webhook_secret
from tandem.celery import app
from tests.integration.q2c_env import (
    Rig,
    approve_quotes,
    catalog_seed,
    customer_fields,
    rig_faults,
    rig_faults_clear,
    rig_records,
    rig_settings,
    rig_start,
    system_environment,
    wait_until,
)
from tests.integration.workers import WorkerHandle
from tests.sandbox.helpers import QUOTE_LINES, SandboxClient, cpq_quote, crm_account

pytestmark = pytest.mark.integration

# Short enough that a breaker opened by a burst of injected faults does not stall the run.
FAST_RECOVERY_ENV = {"CIRCUIT_OPEN_SECONDS": "1"}
ORDERS_DEADLINE_S = 120.0


@pytest.fixture
def rig_factory(
    live_server: Any, start_worker: Callable[..., WorkerHandle], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Rig]]:
    """``rig_factory()``: a fresh sandbox, the catalog, and (unless ``worker=False``) a worker."""
    servers = []

    def make(
        *, worker: bool = True, worker_env: dict[str, str] | None = None, concurrency: int = 4
    ) -> Rig:
        server = rig_start(live_server_url=live_server.url)
        servers.append(server)
        env = system_environment(server.url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the webhook endpoint reads its secrets per request
        catalog_seed()
        if worker:
            start_worker(
                extra_env={**env, **FAST_RECOVERY_ENV, **(worker_env or {})},
                concurrency=concurrency,
            )
        return Rig(sandbox=SandboxClient(server), env=env)

    yield make
    for server in servers:
        server.stop()


def _progress() -> str:
    """Where every run stands, for a failure message."""
    lines = []
    for run in WorkflowRun.objects.order_by("pk"):
        steps = ", ".join(
            f"{s.name}={s.state}/{s.attempts}{(' ' + s.last_error[:80]) if s.last_error else ''}"
            for s in run.steps.exclude(state=StepState.SUCCEEDED).order_by("position")
        )
        lines.append(f"{run.subject_id} {run.state}: {steps}")
    for exc in OperationalException.objects.all():
        lines.append(f"exception {exc.category} {exc.state}: {exc.message[:200]}")
    for event in InboundEvent.objects.exclude(status=InboundStatus.PROCESSED):
        lines.append(f"event {event.system}:{event.event_type} {event.status}")
    return "\n".join(lines)


def wait_for_orders(quote_ids: list[str], state: str, *, timeout: float = ORDERS_DEADLINE_S):
    def reached() -> list[Order] | None:
        orders = list(Order.objects.filter(quote__cpq_quote_id__in=quote_ids, state=state))
        return orders if len(orders) == len(quote_ids) else None

    try:
        return wait_until(reached, timeout=timeout, what=f"{len(quote_ids)} orders {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_progress()}") from None


def assert_each_order_once_downstream(rig: Rig, quote_ids: list[str]) -> list[Order]:
    """One order per quote, and one ERP sales order, one-time invoice and billing
    subscription per order; one ERP and one billing customer per account; nothing else."""
    orders = [Order.objects.get(quote__cpq_quote_id=quote_id) for quote_id in quote_ids]
    order_ids = sorted(order.enterprise_id for order in orders)
    account_ids = sorted({order.account.enterprise_id for order in orders})
    sales_orders = rig_records(rig, "erp", "salesorders")
    invoices = rig_records(rig, "erp", "invoices")
    subscriptions = rig_records(rig, "billing", "subscriptions")
    assert sorted(row["externalId"] for row in sales_orders) == order_ids
    one_time = sorted(row["externalId"] for row in invoices if row["externalId"].endswith("-OT"))
    assert one_time == [f"{o}-OT" for o in order_ids]
    # billing's invoices posted to the ERP's receivables (as they get there), once each
    receivables = [row["externalId"] for row in invoices if not row["externalId"].endswith("-OT")]
    assert len(receivables) == len(set(receivables))
    assert sorted(row["metadata"]["tandem_order"] for row in subscriptions) == order_ids
    erp_customers = rig_records(rig, "erp", "customers")
    billing_customers = rig_records(rig, "billing", "customers")
    assert sorted(row["externalId"] for row in erp_customers) == account_ids
    assert sorted(row["metadata"]["tandem_account"] for row in billing_customers) == account_ids
    return orders


def _deliver(url: str, system: str, body: bytes) -> requests.Response:
    secret = default_webhook_secret(system)
    return requests.post(
        f"{url}/webhooks/{system}/",
        data=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret=secret, body=body),
        },
        timeout=30,
    )


def _envelope(event_id: str, event_type: str, data: dict[str, Any], correlation: str) -> bytes:
    envelope = {
        "event_id": event_id,
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": timezone.now().isoformat(),
        "correlation_id": correlation,
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


# --- 1. latency ---------------------------------------------------------------------------


def test_orders_complete_once_when_erp_and_billing_answer_slowly(rig_factory):
    # given
    rig = rig_factory()
    rig_faults(rig, "erp", latency_ms=300)
    rig_faults(rig, "billing", latency_ms=300)
    # when
    quote_ids = approve_quotes(rig, 3)
    # then
    wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)
    slow = OutboundCall.objects.filter(system__in=["erp", "billing"])
    assert slow.filter(outcome=OutboundOutcome.RETRYABLE).count() == 0
    assert min(slow.values_list("latency_ms", flat=True)) >= 300
    # quote to cash's calls (billing's invoices are being posted to the ERP meanwhile)
    calling = StepRun.objects.filter(system__in=["erp", "billing"], run__kind="quote_to_cash")
    assert set(calling.values_list("state", "attempts")) == {(StepState.SUCCEEDED, 1)}
    assert OperationalException.objects.count() == 0


# --- 2. 5xx -------------------------------------------------------------------------------


def test_erp_server_errors_are_retried_until_every_order_is_active(rig_factory):
    # given
    rig = rig_factory()
    rig_faults(rig, "erp", error_rate=0.5)
    quote_ids = approve_quotes(rig, 3)
    # when
    # The outage lasts until a step has been retried: far less than the 15 s of backoff that
    # five attempts take at the least, so no step runs out of attempts.
    wait_until(
        lambda: StepRun.objects.filter(system="erp", attempts__gte=2).exists(),
        what="an ERP step to be retried",
    )
    rig_faults_clear(rig, "erp")
    # then
    wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)
    failed = OutboundCall.objects.filter(system="erp").exclude(outcome=OutboundOutcome.OK)
    assert set(failed.values_list("outcome", "error_class")) == {
        (OutboundOutcome.RETRYABLE, "server_error")
    }
    assert set(failed.values_list("status_code", flat=True)) <= {500, 503}
    retried = StepRun.objects.filter(system="erp", attempts__gte=2, run__kind="quote_to_cash")
    assert set(retried.values_list("state", flat=True)) == {StepState.SUCCEEDED}
    assert OperationalException.objects.count() == 0


# --- 3. 429 with Retry-After --------------------------------------------------------------


def test_billing_rate_limits_are_retried_no_sooner_than_retry_after(rig_factory):
    # given
    rig = rig_factory()
    rig_faults(rig, "billing", throttle_rate=1.0, retry_after_s=3)
    quote_ids = approve_quotes(rig, 3)
    throttled_step = wait_until(
        lambda: StepRun.objects.filter(
            system="billing", state=StepState.RETRY_SCHEDULED, last_error__contains="429"
        ).first(),
        what="a billing step to be throttled",
    )
    # when
    rig_faults_clear(rig, "billing")
    # then
    last_429 = (
        OutboundCall.objects.filter(
            system="billing", status_code=429, correlation_id=throttled_step.run.subject_id
        )
        .order_by("-created_at")
        .first()
    )
    assert last_429.retry_after_seconds == 3
    assert throttled_step.next_attempt_at - last_429.created_at >= dt.timedelta(seconds=3)
    wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)
    throttled = OutboundCall.objects.filter(system="billing", status_code=429)
    assert set(throttled.values_list("outcome", "retry_after_seconds")) == {
        (OutboundOutcome.RETRYABLE, 3)
    }
    for call in throttled:
        following = (
            OutboundCall.objects.filter(
                system="billing",
                correlation_id=call.correlation_id,
                operation=call.operation,
                created_at__gt=call.created_at,
            )
            .order_by("created_at")
            .first()
        )
        assert following.created_at - call.created_at >= dt.timedelta(seconds=3), call.operation
    assert OperationalException.objects.count() == 0


# --- 4. the response lost after the ERP committed -----------------------------------------


def test_a_lost_erp_response_is_resolved_by_finding_the_committed_record(rig_factory):
    # given
    rig = rig_factory(worker_env={"CONNECTOR_ERP_READ_TIMEOUT": "1"})
    # Every ERP create commits, then the answer never comes (held past the read timeout).
    rig_faults(rig, "erp", lose_response_after_commit_rate=1.0, lose_response_hold_ms=2500)
    # when
    quote_ids = approve_quotes(rig, 3)
    # then
    orders = wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)
    creates = OutboundCall.objects.filter(system="erp", operation="sales_order_create")
    assert sorted(creates.values_list("correlation_id", "error_class")) == sorted(
        (order.enterprise_id, "timeout") for order in orders
    )
    steps = StepRun.objects.filter(name="create_erp_order")
    assert sorted(steps.values_list("attempts", "result__found")) == [(2, True)] * 3
    assert OperationalException.objects.count() == 0


# --- 5. the same webhook many times -------------------------------------------------------


def test_one_order_per_quote_when_the_cpq_webhook_arrives_many_times_at_once(
    rig_factory, live_server
):
    # given
    rig = rig_factory()
    rig_faults(rig, "cpq", duplicate_webhook_rate=1.0, reorder_webhooks=True)
    quote_ids = approve_quotes(rig, 3)
    outbox = rig.sandbox.control("GET", "/webhooks?system=cpq").json()["events"]
    first = next(e for e in outbox if e["payload"]["data"]["cpq_quote_id"] == quote_ids[0])
    body = json.dumps(first["payload"], separators=(",", ":")).encode()
    start = threading.Barrier(20)
    statuses: list[int] = []

    def send() -> None:
        start.wait()
        statuses.append(_deliver(live_server.url, "cpq", body).status_code)

    # when
    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)

    def sandbox_deliveries() -> list[dict[str, Any]] | None:
        events = rig.sandbox.control("GET", "/webhooks?system=cpq").json()["events"]
        done = all(len(event["attempts"]) >= 2 for event in events)
        return events if done else None

    events = wait_until(sandbox_deliveries, what="both copies of every CPQ event delivered")
    by_id = {event["event_id"]: event for event in events}
    sandbox_statuses = [a["status_code"] for a in by_id[first["event_id"]]["attempts"]]
    assert sorted(statuses + sandbox_statuses) == [200] * 21 + [202]
    stored = InboundEvent.objects.filter(system="cpq")
    assert stored.count() == 3
    assert {e.event_id: e.duplicate_deliveries for e in stored} == {
        event_id: (21 if event_id == first["event_id"] else 1) for event_id in by_id
    }
    assert set(stored.values_list("status", flat=True)) == {InboundStatus.PROCESSED}
    assert Order.objects.count() == 3


# --- 6. events out of order ---------------------------------------------------------------


def test_acceptance_and_invoice_events_that_arrive_before_their_quote_are_not_lost(
    rig_factory, live_server
):
    # given
    rig = rig_factory()
    rig_settings(rig, webhook_url=None)  # the CPQ's quote.approved waits in its outbox
    # The ERP's own events come 5 s late, so the early acceptance is the one that counts;
    # billing's latency keeps the one-time invoice after the ERP's own approval (0.3 s).
    rig_faults(rig, "erp", reorder_webhooks=True, reorder_window_ms=5000)
    rig_faults(rig, "billing", latency_ms=300)
    quote_ids = approve_quotes(rig, 1)
    counter = IdentifierCounter.objects.filter(prefix="ORD").first()
    order_id = format_identifier("ORD", (counter.last_value if counter else 0) + 1)
    accepted = _envelope(
        "early-accept-1",
        "order.accepted",
        {"order_id": order_id, "erp_sales_order_id": "5001",
         "accepted_at": timezone.now().isoformat(), "subsidiary": "2"},
        order_id,
    )  # fmt: skip
    invoice_data = {
        "external_invoice_id": "EARLY-INV-1", "invoice_number": "INV-EARLY-1",
        "order_id": order_id, "contract_id": None, "currency": "GBP",
        "total_amount": "1500.00", "tax_amount": "0.00",
        "issue_date": timezone.localdate().isoformat(), "due_date": None,
        "lines": [{"description": "Onboarding", "quantity": "1", "unit_price": "1500.00",
                   "amount": "1500.00"}],
    }  # fmt: skip
    invoice = _envelope("early-invoice-1", "invoice.posted", invoice_data, order_id)
    # when
    assert _deliver(live_server.url, "erp", accepted).status_code == 202
    assert _deliver(live_server.url, "erp", invoice).status_code == 202
    time.sleep(1.0)  # the worker meets both before the order exists
    rig_settings(rig, webhook_url=f"{live_server.url}/webhooks/")
    # then
    (order,) = wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert order.enterprise_id == order_id
    assert_each_order_once_downstream(rig, quote_ids)
    again = _envelope("early-invoice-2", "invoice.posted", invoice_data, order_id)
    assert _deliver(live_server.url, "erp", invoice).status_code == 200
    assert _deliver(live_server.url, "erp", again).status_code == 202
    erp_events = wait_until(
        lambda: (
            None
            if InboundEvent.objects.filter(system="erp", status=InboundStatus.RECEIVED).exists()
            or InboundEvent.objects.filter(system="erp", event_type="order.accepted").count() < 2
            else dict(InboundEvent.objects.filter(system="erp").values_list("event_id", "status"))
        ),
        what="the ERP's own events to arrive and every ERP event to be handled",
    )
    assert erp_events["early-accept-1"] == InboundStatus.PROCESSED
    assert erp_events["early-invoice-1"] == InboundStatus.PROCESSED
    assert erp_events["early-invoice-2"] == InboundStatus.DUPLICATE_ABSORBED
    sandbox_accept = InboundEvent.objects.exclude(event_id="early-accept-1").get(
        system="erp", event_type="order.accepted"
    )
    assert sandbox_accept.status == InboundStatus.DUPLICATE_ABSORBED
    mirrored = ExternalId.objects.filter(
        system="erp", object_type="invoice", external_id="EARLY-INV-1"
    )
    assert mirrored.count() == 1
    assert Invoice.objects.filter(number="INV-EARLY-1", order=order).count() == 1


# --- 7. a permanent failure, fixed and retried --------------------------------------------


def test_an_unmapped_product_holds_the_order_until_mapped_and_retried(rig_factory):
    # given
    rig = rig_factory()
    account_id = crm_account(rig.sandbox, **customer_fields(7))
    training = {
        "ProductCode": "TRAIN-DAY", "SBQQ__ProductName__c": "Training day",
        "SBQQ__ChargeType__c": "One-Time", "SBQQ__Quantity__c": "2",
        "SBQQ__NetPrice__c": "800.00",
    }  # fmt: skip
    quote = cpq_quote(rig.sandbox, account_id, lines=[*QUOTE_LINES, training])
    assert rig.sandbox.post("cpq", f"/quotes/{quote['Id']}/approve").status_code == 200
    (order,) = wait_for_orders([quote["Id"]], OrderState.ON_HOLD)
    exception = OperationalException.objects.get(order=order)
    assert (exception.category, exception.state, exception.step) == (
        "mapping", ExceptionState.OPEN, "map_products",
    )  # fmt: skip
    assert "TRAIN-DAY is not in the catalog" in exception.message
    counts = rig.sandbox.control("GET", "/state").json()
    assert (counts["erp"]["customers"], counts["erp"]["salesorders"]) == (0, 0)
    assert (counts["billing"]["customers"], counts["billing"]["subscriptions"]) == (0, 0)
    # when
    actor = Actor.system("worker")
    product = md.product_create(
        sku="TRAIN-DAY", name="Training day", kind=LineKind.ONE_TIME, actor=actor,
        reason="added to the catalog",
    )  # fmt: skip
    md.product_map(product=product, system="erp", external_id="ITEM-TRAIN-DAY", actor=actor,
                   reason="mapped")  # fmt: skip
    exception_retry(exception=exception, actor=actor, reason="TRAIN-DAY is now mapped")
    # then
    wait_for_orders([quote["Id"]], OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, [quote["Id"]])
    exception.refresh_from_db()
    assert exception.state == ExceptionState.RESOLVED
    (erp_order,) = rig_records(rig, "erp", "salesorders")
    assert sorted(line["item"]["externalId"] for line in erp_order["item"]["items"]) == [
        "ITEM-ONBOARD", "ITEM-PLAT-PRO", "ITEM-TRAIN-DAY",
    ]  # fmt: skip


# --- 8. a worker killed mid-run -----------------------------------------------------------


def _sweep_as_if_later() -> tuple[int, int]:
    """Run both sweepers as their beat tasks would once every lease and grace has passed."""
    later = timezone.now() + engine.RUNNING_LEASE + dt.timedelta(minutes=1)
    return engine.steps_sweep(now=later), inbound_events_sweep(now=later)


def test_every_order_completes_exactly_once_after_the_worker_is_killed(rig_factory, start_worker):
    # given
    rig = rig_factory(worker=False)
    worker_env = {**rig.env, **FAST_RECOVERY_ENV}
    first = start_worker(extra_env=worker_env, concurrency=4)
    rig_faults(rig, "erp", latency_ms=1500)  # ERP calls are slow: the kill lands mid-call
    quote_ids = approve_quotes(rig, 5)
    wait_until(
        lambda: StepRun.objects.filter(system="erp", state=StepState.RUNNING).exists(),
        what="an ERP step to be running",
    )
    # when
    first.kill()
    killed_at = timezone.now()
    rig_faults_clear(rig, "erp")
    _sweep_as_if_later()
    start_worker(extra_env={**worker_env, "CELERY_VISIBILITY_TIMEOUT": "60"}, concurrency=4)
    # then
    assert StepRun.objects.filter(state=StepState.RUNNING, started_at__lt=killed_at).count() == 0
    wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)
    assert Order.objects.count() == 5
    assert OperationalException.objects.count() == 0


# A lease of a few seconds, renewed by the running step's worker three times per lease.
SHORT_LEASE_ENV = {"STEP_LEASE_SECONDS": "3"}


def _sweeping_until_active(quote_ids: list[str], *, timeout: float = ORDERS_DEADLINE_S) -> None:
    """Run the step sweeper every second, as the beat job would, until every order is active."""
    deadline = time.monotonic() + timeout
    while Order.objects.filter(
        quote__cpq_quote_id__in=quote_ids, state=OrderState.ACTIVE
    ).count() < len(quote_ids):
        assert time.monotonic() < deadline, _progress()
        engine.steps_sweep()
        time.sleep(1.0)


def test_a_step_whose_worker_is_killed_is_run_again_once_its_short_lease_lapses(
    rig_factory, start_worker, settings
):
    # given: the messages the killed worker had taken but not started come back after 5 s
    settings.STEP_QUEUED_GRACE_SECONDS = 5
    rig = rig_factory(worker=False)
    worker_env = {**rig.env, **FAST_RECOVERY_ENV, **SHORT_LEASE_ENV}
    first = start_worker(extra_env=worker_env, concurrency=4)
    rig_faults(rig, "erp", latency_ms=2500)  # ERP calls are slow: the kill lands mid-call
    quote_ids = approve_quotes(rig, 3)
    running = wait_until(
        lambda: StepRun.objects.filter(system="erp", state=StepState.RUNNING).first(),
        what="an ERP step to be running",
    )
    # when
    killed_at = timezone.now()
    first.kill()
    rig_faults_clear(rig, "erp")
    # The killed worker's messages stay unacked for the visibility timeout (an hour): only the
    # sweep, judging the lease, can bring its steps back.
    start_worker(extra_env=worker_env, concurrency=4)
    lost = StepRun.objects.get(pk=running.pk)
    engine.steps_sweep(now=lost.lease_expires_at - dt.timedelta(milliseconds=100))
    still_leased = StepRun.objects.get(pk=running.pk)
    wait_until(lambda: timezone.now() > lost.lease_expires_at, what="the lease to lapse")
    engine.steps_sweep()
    redriven = StepRun.objects.get(pk=running.pk)
    # then
    assert lost.state == StepState.RUNNING
    assert lost.lease_expires_at <= killed_at + dt.timedelta(seconds=3)  # not 5 minutes
    assert (still_leased.state, still_leased.attempts) == (StepState.RUNNING, lost.attempts)
    assert redriven.state != StepState.RUNNING or redriven.attempts == lost.attempts + 1
    _sweeping_until_active(quote_ids)
    assert StepRun.objects.get(pk=running.pk).attempts == lost.attempts + 1
    assert_each_order_once_downstream(rig, quote_ids)
    assert Order.objects.count() == 3
    assert OperationalException.objects.count() == 0


def test_a_live_step_slower_than_its_lease_keeps_it_and_is_never_run_twice(rig_factory):
    # given: every ERP call takes longer than the whole lease
    rig = rig_factory(worker_env={"STEP_LEASE_SECONDS": "2"})
    rig_faults(rig, "erp", latency_ms=3000)
    quote_ids = approve_quotes(rig, 2)
    # when: the sweeper runs all along, as often as it can
    resent, leases = [], defaultdict(set)
    while Order.objects.filter(
        quote__cpq_quote_id__in=quote_ids, state=OrderState.ACTIVE
    ).count() < len(quote_ids):
        resent.append(engine.steps_sweep())
        for step in StepRun.objects.filter(system="erp", state=StepState.RUNNING):
            leases[(step.pk, step.attempts)].add(step.lease_expires_at - step.started_at)
        assert len(resent) < 2000, _progress()
        time.sleep(0.2)
    # then
    assert set(resent) == {0}
    renewed = [lengths for lengths in leases.values() if max(lengths) > dt.timedelta(seconds=2)]
    assert renewed, leases  # a lease reached past its first two seconds: it was renewed
    run_twice = (
        StepRun.objects.filter(waiting_for="")  # a waiting step is claimed again on its event
        .exclude(attempts=1)
        .exclude(state=StepState.PENDING)
        .values_list("run__subject_id", "name", "attempts")
    )
    assert list(run_twice) == []
    assert_each_order_once_downstream(rig, quote_ids)


# --- 9. the broker restarts mid-run -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis_start(port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"redis-server on {port} did not start") from None
            time.sleep(0.1)
    client.close()
    return process


def _redis_stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _celery_use_broker(url: str, transport_options: dict[str, Any]) -> None:
    """Point this process's Celery app (the webhook endpoint, pings) at another broker."""
    # kombu keeps one pool per broker URL process-wide: drop the app's references, never
    # close them, so switching back finds the original pools usable.
    app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = url
    app.conf.broker_transport_options = transport_options
    app._pool = None
    app.amqp._producer_pool = None
    with contextlib.suppress(AttributeError):
        del app.control.mailbox.producer_pool


@pytest.fixture
def own_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A redis-server of this test's own on a free loopback port, used as the broker."""
    port = _free_port()
    log = tmp_path / "redis.log"
    holder = {"port": port, "log": log, "process": _redis_start(port, log)}
    url = f"redis://127.0.0.1:{port}/0"
    saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))
    monkeypatch.setattr(settings, "CELERY_BROKER_URL", url)
    _celery_use_broker(url, {"visibility_timeout": 60})
    holder["url"] = url
    yield holder
    _redis_stop(holder["process"])
    _celery_use_broker(*saved)


def test_every_order_completes_exactly_once_across_a_broker_restart(
    own_redis, rig_factory, start_worker
):
    # given
    rig = rig_factory(worker=False)
    worker_env = {**rig.env, **FAST_RECOVERY_ENV, "CELERY_BROKER_URL": own_redis["url"]}
    start_worker(extra_env=worker_env, concurrency=4)
    rig_faults(rig, "erp", latency_ms=500)
    quote_ids = approve_quotes(rig, 4)
    wait_until(
        lambda: StepRun.objects.filter(system="erp", state=StepState.RUNNING).exists(),
        what="an ERP step to be running",
    )
    # when
    _redis_stop(own_redis["process"])  # every queued and unacked message is gone with it
    time.sleep(2.0)  # steps finishing now cannot send their next message
    own_redis["process"] = _redis_start(own_redis["port"], own_redis["log"])
    rig_faults_clear(rig, "erp")
    time.sleep(1.0)
    restarted_at = timezone.now()
    _sweep_as_if_later()
    # then
    assert StepRun.objects.filter(state=StepState.RUNNING, started_at__lt=restarted_at).count() == 0
    wait_for_orders(quote_ids, OrderState.ACTIVE)
    assert_each_order_once_downstream(rig, quote_ids)
    assert Order.objects.count() == 4
    assert OperationalException.objects.count() == 0
