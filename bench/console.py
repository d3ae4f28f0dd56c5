"""The console at scale: seed PostgreSQL with a year or two of business, then time every page.

    .venv/bin/python bench/console.py                  # 1M orders, 200k exceptions, 10M history
    .venv/bin/python bench/console.py --small          # 20k orders: a quick run
    .venv/bin/python bench/console.py --measure-only   # time the pages again on the seeded data
    .venv/bin/python bench/console.py --extras-only    # add the later pages' tables, then time

Seeding drops and recreates its own database (``tandem_bench`` by default, from
``BENCH_DATABASE_URL``; any name without "bench" in it is refused), migrates it and fills it
with COPY (bench/console_seed.py). Pages are requested in this process through Django's test
Client (the whole middleware stack, sessions and templates; no HTTP server or network) as a
signed-in auditor, who may see every page. The pages come from a table of URL names: a name
that does not resolve (a page not built yet) is listed as skipped, so pages added later are
measured once they exist. Prints p50/p95/max per page variant and the seeding time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_bench"
)
AIM_MS = 150.0


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment_set() -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tandem.settings",
            "DATABASE_URL": DATABASE_URL,
            "CELERY_BROKER_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING",
        }
    )


def database_recreate() -> None:
    """Drop and create the benchmark's own database, then migrate it."""
    import subprocess

    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    if "bench" not in name or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to drop {name!r}: the benchmark only drops a *bench* database")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=os.environ.copy(),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def seed(args: argparse.Namespace) -> float:
    from django.db import connection

    from bench.console_extras import extras_seed
    from bench.console_seed import Scale, Seeder

    scale = Scale(
        orders=args.orders,
        exceptions=args.exceptions,
        history=args.history,
        accounts=args.accounts or max(args.orders // 10, 100),
    )
    step(f"seeding {scale}")
    started = time.monotonic()
    with connection.cursor() as cursor:
        # The rows are consistent by construction: skip the per-row foreign-key triggers.
        cursor.execute("SET session_replication_role = replica")
    counts = Seeder(scale, workers=args.workers, say=step).run()
    counts.update(extras_seed(step))
    seeded = time.monotonic() - started
    step(f"rows written in {seeded:.0f} s; VACUUM ANALYZE")
    vacuum_started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    total = time.monotonic() - started
    step(f"VACUUM ANALYZE took {time.monotonic() - vacuum_started:.0f} s")
    width = max(len(name) for name in counts)
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<{width}} {n:>12,}")
    print(f"  {'total':<{width}} {sum(counts.values()):>12,}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        (size,) = cursor.fetchone()
    step(f"seeded in {total:.0f} s ({total / 60:.1f} min), database size {size}")
    return total


# --- the pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One page variant: a URL name (with arguments from the data) and a query string."""

    label: str
    url_names: tuple[str, ...]  # the first that resolves is used (names differ by branch)
    query: dict[str, str] | None = None
    kwargs: Callable[[Samples, int], dict[str, Any]] | None = None


@dataclass
class Samples:
    """Keys from the seeded data, so detail pages and searches hit real records."""

    orders: list[str]
    exceptions: list[int]
    contracts: list[str]
    invoices: list[str]
    account_words: list[str]
    account_ids: list[str]
    invoice_numbers: list[str]
    cpq_ids: list[str]
    erp_ids: list[str]
    run_orders: list[str]  # orders with a workflow run: the fullest timelines


def samples_load(n: int = 40) -> Samples:
    from exceptions.models import OperationalException
    from masterdata.models import Account, ExternalId
    from orchestration.workflows.models import WorkflowRun
    from q2c.models import Contract, Invoice, Order

    def spread(model: Any, field: str, **filters: Any) -> list[Any]:
        last = model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        step_ = max(last // n, 1)
        pks = list(range(1, last + 1, step_))[:n]
        return list(
            model.objects.filter(pk__in=pks, **filters).order_by("pk").values_list(field, flat=True)
        )

    names = spread(Account, "legal_name")
    return Samples(
        orders=spread(Order, "enterprise_id"),
        exceptions=spread(OperationalException, "pk"),
        contracts=spread(Contract, "enterprise_id"),
        invoices=spread(Invoice, "enterprise_id"),
        account_words=[name.split()[0] for name in names] or ["Acme"],
        account_ids=spread(Account, "enterprise_id"),
        invoice_numbers=[x for x in spread(Invoice, "number") if x],
        cpq_ids=list(
            ExternalId.objects.filter(system="cpq")
            .order_by("-pk")
            .values_list("external_id", flat=True)[:n]
        ),
        erp_ids=list(
            ExternalId.objects.filter(system="erp", object_type="sales_order")
            .order_by("-pk")
            .values_list("external_id", flat=True)[:n]
        ),
        run_orders=list(
            WorkflowRun.objects.order_by("-pk").values_list("order__enterprise_id", flat=True)[:n]
        ),
    )


def _pick(values: list[Any], i: int, default: Any = "none") -> Any:
    return values[i % len(values)] if values else default


DEEP = "150"  # 50 rows a page: rows 7,451-7,500
PROBES: list[Probe] = [
    Probe("home", ("home",)),
    Probe("dashboard", ("dashboard",)),
    Probe("orders", ("order-list",)),
    Probe("orders state=provisioning", ("order-list",), {"state": "provisioning"}),
    Probe("orders state=on_hold", ("order-list",), {"state": "on_hold"}),
    Probe("orders stuck", ("order-list",), {"stuck": "1"}),
    Probe("orders stuck age=gt7d", ("order-list",), {"stuck": "1", "age": "gt7d"}),
    Probe(
        "orders stuck state=provisioning 1d-7d",
        ("order-list",),
        {"state": "provisioning", "stuck": "1", "age": "1d-7d"},
    ),
    Probe("orders system=billing", ("order-list",), {"system": "billing"}),
    Probe("orders currency=EUR", ("order-list",), {"currency": "EUR"}),
    Probe("orders account=<ACC>", ("order-list",), {"account": "{account_id}"}),
    Probe("orders q=<order id>", ("order-list",), {"q": "{order}"}),
    Probe("orders q=<cpq quote id>", ("order-list",), {"q": "{cpq}"}),
    Probe("orders q=<erp order id>", ("order-list",), {"q": "{erp}"}),
    Probe("orders q=<invoice number>", ("order-list",), {"q": "{invoice_number}"}),
    Probe("orders q=<account name>", ("order-list",), {"q": "{account_word}"}),
    Probe("orders page=150", ("order-list",), {"page": DEEP}),
    Probe("orders sort=-total", ("order-list",), {"sort": "-total"}),
    Probe("orders sort=in_state", ("order-list",), {"sort": "in_state"}),
    Probe(
        "order timeline",
        ("order-timeline",),
        kwargs=lambda s, i: {"enterprise_id": _pick(s.run_orders or s.orders, i)},
    ),
    Probe(
        "order detail",
        ("order-detail",),
        kwargs=lambda s, i: {"enterprise_id": _pick(s.orders, i)},
    ),
    Probe("contracts", ("contract-list",)),
    Probe("contracts state=active", ("contract-list",), {"state": "active"}),
    Probe("contracts stuck", ("contract-list",), {"stuck": "1"}),
    Probe("contracts system=billing", ("contract-list",), {"system": "billing"}),
    Probe("contracts sort=end", ("contract-list",), {"sort": "end"}),
    Probe("contracts q=<contract id>", ("contract-list",), {"q": "{contract}"}),
    Probe("contracts page=150", ("contract-list",), {"page": DEEP}),
    Probe(
        "contract timeline",
        ("contract-timeline",),
        kwargs=lambda s, i: {"enterprise_id": _pick(s.contracts, i)},
    ),
    Probe("invoices", ("invoice-list",)),
    Probe("invoices state=posted", ("invoice-list",), {"state": "posted"}),
    Probe("invoices page=150", ("invoice-list",), {"page": DEEP}),
    Probe("accounts", ("account-list",)),
    Probe("accounts q=<name>", ("account-list",), {"q": "{account_word}"}),
    Probe("accounts q=<account id>", ("account-list",), {"q": "{account_id}"}),
    Probe("accounts page=150", ("account-list",), {"page": DEEP}),
    Probe(
        "account detail",
        ("account-detail",),
        kwargs=lambda s, i: {"enterprise_id": _pick(s.account_ids, i)},
    ),
    Probe("exceptions (open)", ("exception-list",)),
    Probe("exceptions state=any", ("exception-list",), {"state": "any"}),
    Probe("exceptions category=tax", ("exception-list",), {"category": "tax"}),
    Probe(
        "exceptions team=integration", ("exception-list",), {"owner_team": "integration_support"}
    ),
    Probe("exceptions system=erp", ("exception-list",), {"system": "erp"}),
    Probe("exceptions severity=critical", ("exception-list",), {"severity": "critical"}),
    Probe("exceptions unassigned", ("exception-list",), {"assignee": "none"}),
    Probe("exceptions overdue", ("exception-list",), {"overdue": "1"}),
    Probe("exceptions age=24h", ("exception-list",), {"age": "24h"}),
    Probe("exceptions grouped", ("exception-list",), {"view": "grouped"}),
    Probe("exceptions grouped any", ("exception-list",), {"view": "grouped", "state": "any"}),
    Probe(
        "exceptions grouped team=finance",
        ("exception-list",),
        {"view": "grouped", "owner_team": "finance_ops"},
    ),
    Probe("exceptions any page=150", ("exception-list",), {"state": "any", "page": DEEP}),
    Probe(
        "exception detail",
        ("exception-detail",),
        kwargs=lambda s, i: {"pk": _pick(s.exceptions, i, 1)},
    ),
    Probe("replays", ("replay-list",)),
    Probe("replays state=requested", ("replay-list",), {"state": "requested"}),
    Probe("replays page=150", ("replay-list",), {"page": DEEP}),
    Probe("audit", ("audit-history",)),
    Probe("audit model=order", ("audit-history",), {"model": "q2c.order"}),
    Probe("audit actor=connector:erp", ("audit-history",), {"actor": "connector:erp"}),
    Probe("audit actor=<person>", ("audit-history",), {"actor": "farah.haddad"}),
    Probe("audit people only", ("audit-history",), {"actor_kind": "person"}),
    Probe("audit systems only", ("audit-history",), {"actor_kind": "system"}),
    Probe(
        "audit order field=state",
        ("audit-history",),
        {"model": "q2c.order", "field": "state"},
    ),
    Probe(
        "audit contract field=state people",
        ("audit-history",),
        {"model": "q2c.contract", "field": "state", "actor_kind": "person"},
    ),
    Probe("audit record=<order>", ("audit-history",), {"model": "q2c.order", "record": "{order}"}),
    Probe("audit since 30 days", ("audit-history",), {"since": "{since}"}),
    Probe("audit operators", ("audit-operators",)),
    Probe(
        "audit as-of <order>",
        ("audit-as-of",),
        {"model": "q2c.order", "record": "{order}", "at": "{since}"},
    ),
    Probe("legal entities", ("legalentity-list", "legal-entity-list")),
    Probe("products", ("product-list",)),
    Probe("crosswalk", ("externalid-list", "crosswalk")),
    Probe("crosswalk q=<erp id>", ("externalid-list", "crosswalk"), {"q": "{erp}"}),
    Probe("duplicates", ("duplicate-list",)),
    Probe("duplicates min_score=0.9", ("duplicate-list",), {"min_score": "0.9"}),
    Probe("duplicates status=dismissed", ("duplicate-list",), {"status": "dismissed"}),
    Probe("duplicates q=<name>", ("duplicate-list",), {"q": "{account_word}"}),
    Probe("duplicates page=150", ("duplicate-list",), {"page": DEEP}),
    Probe("merges", ("merge-list",)),
    Probe("merges state=unmerged", ("merge-list",), {"state": "unmerged"}),
]


def probes_with_navigation() -> list[Probe]:
    """The table above plus every page in the navigation it does not name yet."""
    from core.navigation import PAGES

    named = {name for probe in PROBES for name in probe.url_names}
    extra = [
        Probe(page.title.lower(), (page.url_name,)) for page in PAGES if page.url_name not in named
    ]
    return [*PROBES, *extra]


def resolve(probe: Probe, samples: Samples, i: int) -> str | None:
    from django.urls import NoReverseMatch, reverse

    kwargs = probe.kwargs(samples, i) if probe.kwargs else {}
    for name in probe.url_names:
        try:
            path = reverse(name, kwargs=kwargs or None)
        except NoReverseMatch:
            continue
        if not probe.query:
            return path
        values = {
            "order": _pick(samples.orders, i),
            "cpq": _pick(samples.cpq_ids, i),
            "erp": _pick(samples.erp_ids, i),
            "invoice_number": _pick(samples.invoice_numbers, i),
            "account_word": _pick(samples.account_words, i),
            "account_id": _pick(samples.account_ids, i),
            "contract": _pick(samples.contracts, i),
            "since": (dt.date.today() - dt.timedelta(days=30)).isoformat(),
        }
        query = {k: v.format(**values) for k, v in probe.query.items()}
        return f"{path}?{urlencode(query)}"
    return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def measure(repeat: int, warmup: int, only: str | None) -> list[tuple[str, Any]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.console_seed import BENCH_USER

    user = get_user_model().objects.get(username=BENCH_USER)
    client = Client()
    client.force_login(user)
    samples = samples_load()
    results: list[tuple[str, Any]] = []
    skipped: list[str] = []
    for probe in probes_with_navigation():
        if only and only not in probe.label:
            continue
        if resolve(probe, samples, 0) is None:
            skipped.append(f"{probe.label} ({' / '.join(probe.url_names)})")
            continue
        timings: list[float] = []
        cpu: list[float] = []
        statuses: set[int] = set()
        queries = 0
        for i in range(warmup + repeat):
            url = resolve(probe, samples, i)
            assert url is not None
            with CaptureQueriesContext(connection) as captured:
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                cpu_ms = (time.process_time() - cpu_started) * 1000
            statuses.add(response.status_code)
            if i >= warmup:
                timings.append(elapsed)
                cpu.append(cpu_ms)
                queries = max(queries, len(captured))
        results.append(
            (
                probe.label,
                {
                    "url": resolve(probe, samples, 0),
                    "p50": statistics.median(timings),
                    "p95": percentile(timings, 95),
                    "max": max(timings),
                    "cpu": statistics.median(cpu),
                    "queries": queries,
                    "status": ",".join(str(s) for s in sorted(statuses)),
                },
            )
        )
        r = results[-1][1]
        print(
            f"  {probe.label:<34} p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f}  max {r['max']:7.1f} ms"
            f"  cpu {r['cpu']:6.1f}  {r['queries']:3d} queries  HTTP {r['status']}",
            flush=True,
        )
    if skipped:
        print("skipped (URL name not in this build):")
        for name in skipped:
            print(f"  {name}")
    return results


def report(results: list[tuple[str, Any]], seeded_s: float | None, repeat: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM q2c_order), "
            "(SELECT count(*) FROM exceptions_operationalexception), "
            "(SELECT sum(n_live_tup) FROM pg_stat_user_tables WHERE relname LIKE '%%historical%%')"
        )
        orders, exceptions, history = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        (size,) = cursor.fetchone()
    print()
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print(
        f"database {size}; {orders:,} orders, {exceptions:,} exceptions, "
        f"~{int(history or 0):,} history rows; {repeat} requests per page, "
        "Django test Client, signed in as an auditor"
    )
    if seeded_s is not None:
        print(f"seeding: {seeded_s:.0f} s ({seeded_s / 60:.1f} min)")
    print()
    print(f"| {'page':<34} | p50 ms | p95 ms | max ms | CPU p50 ms | queries |")
    print(f"|{'-' * 36}|-------:|-------:|-------:|-----------:|--------:|")
    for label, r in results:
        flag = "" if r["p95"] < AIM_MS and r["status"] == "200" else " !"
        status = "" if r["status"] == "200" else f" (HTTP {r['status']})"
        print(
            f"| {label + status + flag:<34} | {r['p50']:6.1f} | {r['p95']:6.1f} | {r['max']:6.1f} "
            f"| {r['cpu']:10.1f} | {r['queries']:7d} |"
        )
    slow = [label for label, r in results if r["p95"] >= AIM_MS]
    print()
    print(f"aim p95 < {AIM_MS:.0f} ms: {'met' if not slow else 'missed by ' + ', '.join(slow)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--exceptions", type=int, default=200_000)
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=0, help="default: orders / 10")
    parser.add_argument(
        "--small", action="store_true", help="20k orders, 4k exceptions, 200k history rows"
    )
    parser.add_argument("--workers", type=int, default=3, help="seeding processes")
    parser.add_argument("--measure-only", action="store_true", help="keep the seeded data")
    parser.add_argument(
        "--extras-only",
        action="store_true",
        help="keep the seeded data; (re)seed only replays, comments, duplicates, merges, cursors",
    )
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", help="measure only pages whose label contains this")
    args = parser.parse_args()
    if args.small:
        args.orders, args.exceptions, args.history = 20_000, 4_000, 200_000
    environment_set()
    seeded_s = None
    keep = args.measure_only or args.extras_only
    if not keep:
        step(f"recreating {urlsplit(DATABASE_URL).path.lstrip('/')} and migrating")
        database_recreate()
    import django

    django.setup()
    if not keep:
        seeded_s = seed(args)
    if args.extras_only:
        from bench.console_extras import extras_seed

        step("seeding replays, comments, duplicate candidates, merges, poll cursors")
        extras_seed(step)
    step("measuring")
    results = measure(args.repeat, args.warmup, args.only)
    report(results, seeded_s, args.repeat)


if __name__ == "__main__":
    main()
