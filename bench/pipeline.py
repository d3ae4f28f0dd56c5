"""Pipeline: orders per second end to end through the sandbox, at zero injected latency.

The whole production shape on loopback: the sandbox (``manage.py sandbox``, ERP approval
delay 0, no faults), Tandem's gunicorn receiving its webhooks, two Celery workers (threads
pool, concurrency 8, every queue) on PostgreSQL and Redis, connector rate limits raised to
1000/s. The script:

1. recreates and migrates the benchmark database, empties its Redis db, starts everything,
   seeds the catalog the sandbox's products map to (tests/integration/q2c_env.py);
2. creates N distinct CRM customers and CPQ quotes in the sandbox and approves them, as fast
   as it can (8 threads); each approval sends ``quote.approved`` to Tandem;
3. waits until every order is active, or stopped by an exception;
4. prints orders/s, cycle time p50/p95 (order created -> activated) and, per workflow step,
   the mean queue wait (enqueued -> started), run time (started -> finished), time inside
   the outbound calls it made, the orchestration overhead (run time - outbound time), and
   the SQL statements and transactions each execution of the step ran (counted inside the
   workers by ``bench/step_probe.py``); then the statements and transactions of one order's
   steps, and PostgreSQL's commits per order (steps, inbound events and web requests).

Before all that it measures the ceiling in the same run (``bench/ceiling_chain.py``): as many
bare Celery chains as quotes, each as many steps long as the quote-to-cash workflow, each
step one committed INSERT and the enqueue of the next, two prefork workers with acks_late and
prefetch 1 on the same PostgreSQL and Redis. The last line printed is
``pipeline: X orders/s; ceiling: Y orders/s; ratio: Z%``.

Run: ``.venv/bin/python bench/pipeline.py [--quotes 200]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from bench._common import (
    BIN,
    DATABASE_URL,
    GUNICORN_ARGS,
    REDIS_URL,
    Children,
    bench_environment,
    children,
    cpu_report,
    cpu_snapshot,
    database_recreate,
    free_port,
    gunicorn_start,
    http_wait,
    machine_summary,
    percentile,
    redis_flush,
    step,
)
from sandbox.config import SYSTEMS, default_api_key, default_webhook_secret

WORKERS = 2
WORKER_CONCURRENCY = 8
RATE_LIMIT = "1000"
QUOTE_THREADS = 8


def pipeline_environment(sandbox_url: str) -> dict[str, str]:
    extra = {"CONNECTOR_SANDBOX_URL": sandbox_url}
    for system in SYSTEMS:
        extra[f"CONNECTOR_{system.upper()}_API_KEY"] = default_api_key(system)
        extra[f"CONNECTOR_{system.upper()}_RATE_LIMIT"] = RATE_LIMIT
        extra[f"WEBHOOK_SECRET_{system.upper()}"] = default_webhook_secret(system)
    return bench_environment(**extra)


def workers_start(kids: Children, env: dict[str, str], *, pool: str, profile: str) -> list[str]:
    """Start the workers; with ``profile``, one solo worker under cProfile writing there."""
    from django.conf import settings

    names = []
    for n in range(1, (1 if profile else WORKERS) + 1):
        name = f"bench{n}-{os.getpid()}@127.0.0.1"
        queues = ",".join(settings.TANDEM_QUEUES)
        argv = [str(BIN / "celery"), "-A", "tandem", "worker", "-Q", queues, "--hostname", name,
                "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                "--include", "bench.step_probe"]  # fmt: skip
        if profile:
            argv = [sys.executable, "-m", "cProfile", "-o", profile, *argv, "--pool", "solo"]
        else:
            argv += ["--pool", pool, "-c", str(WORKER_CONCURRENCY)]
        kids.start(f"pipeline-worker{n}", argv, env)
        names.append(name)
    return names


def workers_wait(kids: Children, names: list[str], timeout_s: float = 60.0) -> None:
    from tandem.celery import app

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids.check_alive()
        replies = app.control.ping(destination=names, timeout=1.0)
        answered = {name for reply in replies for name in reply}
        if answered >= set(names):
            return
    raise SystemExit(f"workers did not answer a ping within {timeout_s:.0f} s")


class Sandbox:
    """The sandbox's public API, as a client (one requests session per thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def post(self, system: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
        response = session.post(
            f"{self.url}/{system}{path}",
            json=body,
            headers={"Authorization": f"Bearer {default_api_key(system)}"},
            timeout=30,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"sandbox {system}{path}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    def approve_quote(self, n: int, run: str) -> None:
        """A new CRM customer, a CPQ quote (one recurring and one one-time line), approved."""
        account = self.post("crm", "/accounts", {
            "Name": f"Bench {run} Customer {n:05d} Ltd", "Website": f"https://b{n}-{run}.example",
            "BillingCountryCode": "GB", "BillingCity": "London", "BillingPostalCode": "EC1A 1AA",
            "BillingStreet": f"{n} High Street", "CurrencyIsoCode": "GBP",
            "Tax_Id__c": f"GB{700000000 + n}",
        })  # fmt: skip
        quote = self.post("cpq", "/quotes", {
            "SBQQ__Account__c": account["id"], "CurrencyIsoCode": "GBP",
            "SBQQ__StartDate__c": "2026-01-01", "SBQQ__SubscriptionTerm__c": 12,
            "SBQQ__ExpirationDate__c": "2026-02-04", "Legal_Entity__c": "UK01",
            "lines": [
                {"ProductCode": "PLAT-PRO", "SBQQ__ProductName__c": "Platform Pro seats",
                 "SBQQ__ChargeType__c": "Recurring", "SBQQ__BillingFrequency__c": "Monthly",
                 "SBQQ__Quantity__c": str(5 + n % 40), "SBQQ__ListPrice__c": "40.00",
                 "SBQQ__Discount__c": "10"},
                {"ProductCode": "ONBOARD", "SBQQ__ProductName__c": "Onboarding",
                 "SBQQ__ChargeType__c": "One-Time", "SBQQ__Quantity__c": "1",
                 "SBQQ__NetPrice__c": "1500.00"},
            ],
        })  # fmt: skip
        self.post("cpq", f"/quotes/{quote['Id']}/approve", {})


def ceiling_measure(env: dict[str, str], *, chains: int, timeout_s: float) -> float:
    """Orders per second of the bare chain (see the module docstring); 0.0 if it timed out."""
    from orchestration.workflows.quote_to_cash import QUOTE_TO_CASH

    steps = len(QUOTE_TO_CASH.steps)
    os.environ["CEILING_BROKER_URL"] = REDIS_URL
    from bench import ceiling_chain

    ceiling_chain.table_create(DATABASE_URL)
    ceiling_env = {**env, "CEILING_DATABASE_URL": DATABASE_URL, "CEILING_BROKER_URL": REDIS_URL}
    with children() as kids:
        name = f"ceiling-{os.getpid()}@127.0.0.1"
        kids.start("pipeline-ceiling-worker", [str(BIN / "celery"), "-A", "bench.ceiling_chain",
                   "worker", "-Q", "ceiling", "--pool", "prefork", "-c", str(WORKERS),
                   "--hostname", name, "--loglevel", "WARNING", "--without-gossip",
                   "--without-mingle"], ceiling_env)  # fmt: skip
        deadline = time.monotonic() + 60
        while not ceiling_chain.app.control.ping(destination=[name], timeout=1.0):
            kids.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit("the ceiling worker did not answer a ping within 60 s")
        step(f"ceiling: {chains} bare chains of {steps} steps, {WORKERS} prefork workers")
        started = time.monotonic()
        for n in range(chains):
            ceiling_chain.ceiling_step.delay(n, 0, steps)
        done = 0
        while done < chains and time.monotonic() - started < timeout_s:
            kids.check_alive()
            time.sleep(0.2)
            done = ceiling_chain.finished(DATABASE_URL, steps)
        elapsed = time.monotonic() - started
    redis_flush()
    if done < chains:
        step(f"ceiling: only {done}/{chains} chains finished in {elapsed:.0f} s")
        return 0.0
    rate = chains / elapsed
    step(f"ceiling: {rate:.1f} orders/s ({rate * steps:.0f} steps/s)")
    return rate


def progress() -> tuple[int, int, int, int]:
    """(orders, active, stopped by an open exception, steps succeeded), read fresh."""
    from django.db import connections

    from exceptions.models import OPEN_STATES, OperationalException
    from orchestration.workflows.models import StepRun, StepState
    from q2c.models import Order, OrderState

    connections.close_all()
    orders = Order.objects.count()
    active = Order.objects.filter(state=OrderState.ACTIVE).count()
    stopped = (
        OperationalException.objects.filter(state__in=OPEN_STATES, order__isnull=False)
        .exclude(order__state=OrderState.ACTIVE)
        .values("order")
        .distinct()
        .count()
    )
    steps = StepRun.objects.filter(state=StepState.SUCCEEDED).count()
    return orders, active, stopped, steps


def database_work() -> dict[str, int]:
    """PostgreSQL's counters for the benchmark database: commits and rows written."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit, tup_inserted, tup_updated "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    names = ("commits", "rows inserted", "rows updated")
    return dict(zip(names, (int(v) for v in row), strict=True))


def ms(delta: dt.timedelta) -> float:
    return delta.total_seconds() * 1000


def step_figures() -> list[tuple[str, int, float, float, float, float, float]]:
    """Per step name: runs, queue wait, run time, outbound calls, outbound time, overhead."""
    from orchestration.models import OutboundCall
    from orchestration.workflows.models import StepRun, StepState

    steps = list(
        StepRun.objects.filter(state=StepState.SUCCEEDED).values_list(
            "name", "position", "run__subject_id", "enqueued_at", "started_at", "finished_at"
        )
    )
    calls: dict[str, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for correlation_id, created_at, latency_ms in OutboundCall.objects.values_list(
        "correlation_id", "created_at", "latency_ms"
    ):
        calls[correlation_id].append((created_at, latency_ms))
    by_name: dict[tuple[int, str], list[tuple[float, float, int, float]]] = defaultdict(list)
    for name, position, subject_id, enqueued_at, started_at, finished_at in steps:
        if not (enqueued_at and started_at and finished_at):
            continue
        inside = [lat for at, lat in calls.get(subject_id, ()) if started_at <= at <= finished_at]
        by_name[(position, name)].append(
            (ms(started_at - enqueued_at), ms(finished_at - started_at), len(inside), sum(inside))
        )
    rows = []
    for (_, name), samples in sorted(by_name.items()):
        wait = statistics.fmean(s[0] for s in samples)
        run = statistics.fmean(s[1] for s in samples)
        count = statistics.fmean(s[2] for s in samples)
        outbound = statistics.fmean(s[3] for s in samples)
        rows.append((name, len(samples), wait, run, count, outbound, run - outbound))
    return rows


def sql_figures(probed: list[tuple[int, str, int, int]]) -> dict[str, tuple[float, float, int]]:
    """Per step name: mean SQL statements and transactions per execution, and executions
    (re-deliveries and "nothing to do" included: they cost the database too)."""
    from orchestration.workflows.models import StepRun

    names = dict(StepRun.objects.filter(pk__in={p[0] for p in probed}).values_list("pk", "name"))
    by_name: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for step_id, _, statements, transactions in probed:
        by_name[names.get(step_id, "?")].append((statements, transactions))
    return {
        name: (
            statistics.fmean(s for s, _ in samples),
            statistics.fmean(t for _, t in samples),
            len(samples),
        )
        for name, samples in by_name.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quotes", type=int, default=200, help="quotes to approve (200)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    parser.add_argument(
        "--idle", type=float, default=60.0, help="give up after this long with no progress (60)"
    )
    parser.add_argument(
        "--pool", default="threads", help="Celery pool of each worker (threads; or prefork)"
    )
    parser.add_argument(
        "--profile", default="", metavar="FILE", help="run one solo worker under cProfile instead"
    )
    args = parser.parse_args()

    step(f"machine: {machine_summary()}")
    tandem_port = free_port()
    sandbox_port = free_port(taken=[tandem_port])
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = pipeline_environment(sandbox_url)
    os.environ.update(env)  # this process reads the same database and broker
    import django

    django.setup()

    step("recreating and migrating the benchmark database")
    database_recreate(env)
    redis_flush()
    from tests.integration.q2c_env import catalog_seed

    catalog_seed()
    ceiling = ceiling_measure(env, chains=args.quotes, timeout_s=args.timeout)
    with children() as kids:
        kids.start("pipeline-sandbox", [sys.executable, "manage.py", "sandbox",
                   "--port", str(sandbox_port), "--seed", "5", "--erp-approval-delay", "0",
                   "--webhook-url", f"http://127.0.0.1:{tandem_port}/webhooks/"], env)  # fmt: skip
        http_wait(sandbox_port, "/_control/health", kids)
        gunicorn_start(kids, name="pipeline-gunicorn", port=tandem_port, env=env)
        names = workers_start(kids, env, pool=args.pool, profile=args.profile)
        workers_wait(kids, names)
        step(f"sandbox on {sandbox_url}, gunicorn {' '.join(GUNICORN_ARGS)} on port "
             f"{tandem_port}, {WORKERS} workers x {WORKER_CONCURRENCY} threads")  # fmt: skip

        sandbox = Sandbox(sandbox_url)
        run = uuid.uuid4().hex[:6]
        step(f"approving {args.quotes} quotes in the sandbox CPQ ({QUOTE_THREADS} threads)")
        cpu_before = cpu_snapshot(kids)
        db_before = database_work()
        started_at = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        with ThreadPoolExecutor(QUOTE_THREADS) as pool:
            list(pool.map(lambda n: sandbox.approve_quote(n, run), range(args.quotes)))
        step(f"all approved in {time.monotonic() - started:.1f} s; waiting for the orders")

        deadline = started + args.timeout
        last, last_change = (-1, -1, -1, -1), time.monotonic()
        while True:
            kids.check_alive()
            now = time.monotonic()
            current = progress()
            if current[:3] != last[:3]:
                step("orders {}/{}, active {}, stopped by an exception {}, steps done {}".format(
                    current[0], args.quotes, *current[1:]))  # fmt: skip
            if current != last:
                last, last_change = current, now
            if current[1] + current[2] >= args.quotes:
                break
            if now > deadline or now - last_change > args.idle:
                step(f"gave up: no progress for {now - last_change:.0f} s")
                break
            time.sleep(0.5)
        waited_s = time.monotonic() - started
        cpu_text = cpu_report(cpu_before, cpu_snapshot(kids), waited_s)
        db_after = database_work()
        from bench.step_probe import step_costs

        probed = step_costs(REDIS_URL)
    redis_flush()

    from exceptions.models import OperationalException
    from orchestration.workflows.models import StepRun, StepState
    from q2c.models import Order, OrderState

    done = list(
        Order.objects.filter(state=OrderState.ACTIVE).values_list("created_at", "activated_at")
    )
    states = Counter(Order.objects.values_list("state", flat=True))
    categories = Counter(OperationalException.objects.values_list("category", flat=True))
    print()
    print(f"pipeline, {args.quotes} quotes, sandbox at zero latency, {WORKERS} Celery workers x "
          f"{WORKER_CONCURRENCY} threads, gunicorn {' '.join(GUNICORN_ARGS)}")  # fmt: skip
    print(f"orders by state: {dict(states)}; exceptions by category: {dict(categories) or 'none'}")
    stuck = Counter(
        StepRun.objects.exclude(state__in=[StepState.SUCCEEDED, StepState.PENDING])
        .exclude(run__order__state=OrderState.ACTIVE)
        .values_list("name", "state")
    )
    if stuck:
        print("steps of unfinished orders: " + ", ".join(f"{n} {st}: {c}" for (n, st), c in
                                                        sorted(stuck.items())))  # fmt: skip
    print(cpu_text)
    finished = max(1, len(done))
    work = [f"{name} {(db_after[name] - db_before[name]) / finished:.0f}" for name in db_after]
    print("database work per active order: " + ", ".join(work))
    if not done:
        print("no order became active")
        print(f"pipeline: 0.0 orders/s; ceiling: {ceiling:.1f} orders/s; ratio: 0%")
        return
    last_activated = max(activated for _, activated in done)
    span_s = (last_activated - started_at).total_seconds()
    flowing_s = (last_activated - min(created for created, _ in done)).total_seconds()
    cycles = [(activated - created).total_seconds() for created, activated in done]
    print(f"throughput             {len(done) / span_s:6.1f} orders/s  ({len(done)} active in "
          f"{span_s:.1f} s from the first approval; {len(done) / flowing_s:.1f} orders/s from "
          f"the first order created; waited {waited_s:.1f} s)")  # fmt: skip
    print(f"cycle time             p50 {percentile(cycles, 50):6.2f} s   "
          f"p95 {percentile(cycles, 95):6.2f} s   max {max(cycles):6.2f} s")  # fmt: skip
    print()
    print(f"{'step':<28}{'runs':>6}{'queue wait':>12}{'run time':>10}{'calls':>7}"
          f"{'in calls':>10}{'overhead':>10}{'SQL':>6}{'txns':>6}   (means; times in ms,"
          " SQL and transactions per execution)")  # fmt: skip
    rows = step_figures()
    sql = sql_figures(probed)
    for name, n, wait, run_ms, count, outbound, overhead in rows:
        statements, transactions, _ = sql.get(name, (0.0, 0.0, 0))
        print(f"{name:<28}{n:>6}{wait:>12.1f}{run_ms:>10.1f}{count:>7.1f}{outbound:>10.1f}"
              f"{overhead:>10.1f}{statements:>6.1f}{transactions:>6.1f}")  # fmt: skip
    total_runs = sum(r[1] for r in rows)
    if total_runs:

        def weighted(i: int) -> float:
            return sum(r[i] * r[1] for r in rows) / total_runs

        print(f"{'all steps':<28}{total_runs:>6}{weighted(2):>12.1f}{weighted(3):>10.1f}"
              f"{weighted(4):>7.1f}{weighted(5):>10.1f}{weighted(6):>10.1f}")  # fmt: skip
    if probed:
        executions = len(probed)
        statements = sum(p[2] for p in probed)
        transactions = sum(p[3] for p in probed)
        print(f"step executions {executions} ({executions / finished:.1f} per active order): "
              f"{statements / executions:.1f} SQL statements and {transactions / executions:.1f}"
              f" transactions each; per active order {statements / finished:.0f} statements and"
              f" {transactions / finished:.0f} transactions in steps")  # fmt: skip
    rate = len(done) / span_s
    ratio = f"{100 * rate / ceiling:.0f}%" if ceiling else "n/a (the ceiling did not finish)"
    print()
    print(f"pipeline: {rate:.1f} orders/s; ceiling: {ceiling:.1f} orders/s; ratio: {ratio}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
