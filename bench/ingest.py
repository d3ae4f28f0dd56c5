"""Ingest: Tandem's signed webhook endpoint against a bare one-INSERT Django view.

One gunicorn (bench.settings_bench: Tandem's production settings plus the ceiling URL) on
PostgreSQL serves both endpoints with the same settings. The script:

1. recreates and migrates the benchmark database, creates the ceiling's table, empties its
   Redis db (the Celery broker the endpoint enqueues to; no worker runs);
2. warms both endpoints up, then sends a fixed number of requests to each at a fixed
   concurrency: first ``POST /bench/ceiling/`` (one INSERT of the body), then
   ``POST /webhooks/cpq/`` with distinct, properly signed ``quote.approved`` deliveries
   (signature check, JSON parse, one INSERT, the Celery message sent on commit);
3. prints requests/s, p50/p99 latency and the endpoint/ceiling ratio, and checks that every
   accepted request left its row.

Run: ``.venv/bin/python bench/ingest.py [--requests 3000] [--concurrency 16]``
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    CEILING_TABLE,
    DATABASE_URL,
    GUNICORN_ARGS,
    LoadResult,
    bench_environment,
    children,
    cpu_snapshot,
    database_recreate,
    free_port,
    gunicorn_start,
    http_request,
    load_run,
    machine_summary,
    redis_flush,
    step,
)
from orchestration.events.signatures import SIGNATURE_HEADER, signature_header

SECRET = "whsec_bench_cpq"  # noqa: S105 (a throwaway secret for this run only)


def quote_approved_envelope() -> dict[str, Any]:
    """A real ``quote.approved`` delivery, as the sandbox CPQ emits it (no HTTP involved)."""
    from sandbox import Sandbox, SandboxConfig
    from sandbox.app import Request

    sandbox = Sandbox(SandboxConfig(seed=3, webhook_url=None))

    def call(system: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer sk_sandbox_{system}"}
        outcome = sandbox.handle(Request("POST", f"/{system}{path}", headers, json.dumps(body)
                                         .encode()))  # fmt: skip
        if outcome.status >= 300:
            raise SystemExit(f"sandbox {system}{path} answered {outcome.status}: {outcome.body!r}")
        return json.loads(outcome.body) if outcome.body else {}

    account = call("crm", "/accounts", {
        "Name": "Northwind Traders Ltd", "Website": "https://www.northwind.example",
        "BillingCountryCode": "GB", "BillingCity": "London", "BillingPostalCode": "EC1A 1AA",
        "BillingStreet": "1 High Street", "CurrencyIsoCode": "GBP", "Tax_Id__c": "GB123456789",
    })  # fmt: skip
    quote = call("cpq", "/quotes", {
        "SBQQ__Account__c": account["id"], "CurrencyIsoCode": "GBP",
        "SBQQ__StartDate__c": "2026-01-01", "SBQQ__SubscriptionTerm__c": 12,
        "SBQQ__ExpirationDate__c": "2026-02-04", "Legal_Entity__c": "UK01",
        "lines": [
            {"ProductCode": "PLAT-PRO", "SBQQ__ProductName__c": "Platform Pro seats",
             "SBQQ__ChargeType__c": "Recurring", "SBQQ__BillingFrequency__c": "Monthly",
             "SBQQ__Quantity__c": "25", "SBQQ__ListPrice__c": "40.00", "SBQQ__Discount__c": "10"},
            {"ProductCode": "ONBOARD", "SBQQ__ProductName__c": "Onboarding",
             "SBQQ__ChargeType__c": "One-Time", "SBQQ__Quantity__c": "1",
             "SBQQ__NetPrice__c": "1500.00"},
        ],
    })  # fmt: skip
    call("cpq", f"/quotes/{quote['Id']}/approve", {})
    (event,) = [e for e in sandbox.state.webhooks.values() if e["event_type"] == "quote.approved"]
    return json.loads(event["body"])


def deliveries(template: dict[str, Any], count: int, *, label: str) -> list[bytes]:
    """``count`` distinct signed deliveries of ``template`` (new event and quote ids)."""
    run = uuid.uuid4().hex[:8]
    requests = []
    for n in range(count):
        envelope = json.loads(json.dumps(template))
        envelope["event_id"] = f"evt_bench_{run}_{label}_{n:06d}"
        envelope["data"]["cpq_quote_id"] = f"a0q{run}{label[:1]}{n:07d}"
        body = json.dumps(envelope, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret=SECRET, body=body),
        }
        requests.append(http_request("POST", "/webhooks/cpq/", body, headers))
    return requests


def ceiling_requests(endpoint_requests: list[bytes]) -> list[bytes]:
    """The same bytes sent to the ceiling view (same size, headers and body)."""
    return [
        r.replace(b"POST /webhooks/cpq/ ", b"POST /bench/ceiling/ ", 1) for r in endpoint_requests
    ]


def table_counts() -> tuple[int, int]:
    import psycopg

    with psycopg.connect(DATABASE_URL) as conn:
        (ceiling,) = conn.execute(f"SELECT count(*) FROM {CEILING_TABLE}").fetchone()  # type: ignore[misc] # noqa: S608
        (events,) = conn.execute(  # type: ignore[misc]
            "SELECT count(*) FROM orchestration_inboundevent WHERE signature_valid"
        ).fetchone()
    return int(ceiling), int(events)


def ceiling_table_create() -> None:
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CEILING_TABLE} (id bigserial PRIMARY KEY, "
            "body text NOT NULL, received_at timestamptz NOT NULL)"
        )


def report(name: str, result: LoadResult, expected: int) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()))
    errors = ", ".join(f"{kind}: {n}" for kind, n in result.errors.items()) or "none"
    short = "" if result.sent == expected else f" (time limit hit after {result.sent})"
    return (
        f"{name:<22} {result.rate:8.0f} req/s   p50 {result.percentile_ms(50):6.1f} ms   "
        f"p99 {result.percentile_ms(99):6.1f} ms   max {result.percentile_ms(100):6.1f} ms   "
        f"[{statuses}; errors {errors}]{short}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per endpoint (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (default 16)")
    parser.add_argument("--warmup", type=int, default=400, help="per endpoint (default 400)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per run")
    args = parser.parse_args()

    env = bench_environment(
        DJANGO_SETTINGS_MODULE="bench.settings_bench", WEBHOOK_SECRET_CPQ=SECRET
    )
    step(f"machine: {machine_summary()}")
    step("recreating and migrating the benchmark database")
    database_recreate(env)
    ceiling_table_create()
    redis_flush()
    template = quote_approved_envelope()
    with children() as kids:
        port = free_port()
        gunicorn_start(kids, name="ingest-gunicorn", port=port, env=env,
                       app="tandem.wsgi")  # fmt: skip
        step(f"gunicorn {' '.join(GUNICORN_ARGS)} on 127.0.0.1:{port}")

        step(f"warming up: {args.warmup} requests to each endpoint")
        warm = deliveries(template, args.warmup, label="warm")
        load_run(port, ceiling_requests(warm), concurrency=args.concurrency)
        load_run(port, warm, concurrency=args.concurrency)
        before_ceiling, before_events = table_counts()

        step(f"ceiling: {args.requests} requests, concurrency {args.concurrency}")
        measured = deliveries(template, args.requests, label="run")
        cpu = [cpu_snapshot(kids)]
        ceiling = load_run(port, ceiling_requests(measured), concurrency=args.concurrency,
                           time_limit_s=args.time_limit)  # fmt: skip
        cpu.append(cpu_snapshot(kids))
        step(f"endpoint: {args.requests} signed deliveries, concurrency {args.concurrency}")
        measured = deliveries(template, args.requests, label="end")  # fresh timestamps
        cpu.append(cpu_snapshot(kids))
        endpoint = load_run(port, measured, concurrency=args.concurrency,
                            time_limit_s=args.time_limit)  # fmt: skip
        cpu.append(cpu_snapshot(kids))
        after_ceiling, after_events = table_counts()
        kids.check_alive()
    redis_flush()

    print()
    print(f"ingest, {args.requests} requests per endpoint, {args.concurrency} connections, "
          f"gunicorn {' '.join(GUNICORN_ARGS)}")  # fmt: skip
    print(report("ceiling (1 INSERT)", ceiling, args.requests))
    print(report("POST /webhooks/cpq/", endpoint, args.requests))
    for name, result, before, after in (
        ("ceiling", ceiling, cpu[0], cpu[1]),
        ("endpoint", endpoint, cpu[2], cpu[3]),
    ):
        served = max(1, len(result.latencies_s))
        spent = {k: max(0.0, after[k] - before.get(k, 0.0)) * 1000 / served for k in after}
        print(f"CPU per request, {name:<9}" + "  ".join(
            f"{label} {spent.get(label, 0.0):.2f} ms"
            for label in ("ingest-gunicorn", "postgres", "redis", "this script", "other processes")
        ))  # fmt: skip
    ratio = endpoint.rate / ceiling.rate if ceiling.rate else 0.0
    print(f"endpoint / ceiling     {ratio:8.0%} of the ceiling's requests/s")
    print(
        f"rows written: ceiling {after_ceiling - before_ceiling} "
        f"(2xx {sum(n for c, n in ceiling.statuses.items() if 200 <= c < 300)}), "
        f"inbound events {after_events - before_events} "
        f"(202 {endpoint.statuses.get(202, 0)})"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
