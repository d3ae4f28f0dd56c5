"""Reconcile: 1,000,000 invoices per system, against a ceiling measured in the same run.

1. recreates and migrates the benchmark database (``BENCH_DATABASE_URL``, by default
   ``tandem_recon_bench``), then writes N invoices mirrored from billing and N mirrored from
   the ERP into Tandem's tables with COPY (invoices and their crosswalk rows; set-up data,
   so no history rows);
2. writes each system's side as files of list pages, exactly the bodies the sandbox's
   listings answer (billing: Stripe-like pages of 100, the ERP: NetSuite-like pages of
   1000), with known drift injected: amounts, taxes, statuses changed, invoices missing on
   either side, duplicates;
3. times ``reconciliation_run`` for billing and for the ERP: Tandem's side through the same
   streamed query, each page parsed by the connector's own page parser and compared by
   the same code as a run over HTTP (the HTTP round trips are what is left out), drift
   items written;
4. times the ceiling in the same process: reading the same Tandem rows with
   ``COPY (SELECT …) TO STDOUT`` and the same pages from the files with ``json.loads``;
5. prints the time, the ceiling and their ratio, and checks that what was found is exactly
   what was injected.

Run: ``.venv/bin/python bench/reconcile.py [--invoices 1000000] [--seed 1]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_recon_bench")

from bench._common import (
    DATABASE_URL,
    VAR_DIR,
    bench_environment,
    database_recreate,
    machine_summary,
    step,
)

DRIFT_PER_KIND = 100
INVOICES_PER_ORDER = 100
BILLING_PAGE = 100
ERP_PAGE = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skip-seed", action="store_true",
        help="the database and files of the last run with the same --invoices and --seed",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-database", action="store_true",
        help="empty the tables this benchmark writes instead of recreating the database",
    )  # fmt: skip
    args = parser.parse_args()
    step(f"machine: {machine_summary()}")
    env = bench_environment()
    if not (args.reuse_database or args.skip_seed):
        step(f"recreating and migrating {DATABASE_URL.rsplit('/', 1)[-1]}")
        database_recreate(env)
    os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "SECRET_KEY")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "tandem.settings"
    os.environ["DEBUG"] = "0"
    import django

    django.setup()
    if args.reuse_database and not args.skip_seed:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE q2c_invoice, q2c_order, masterdata_externalid, "
                "orchestration_driftitem, orchestration_historicaldriftitem, "
                "orchestration_reconciliationrun, orchestration_historicalreconciliationrun, "
                "masterdata_account, masterdata_legalentity CASCADE"
            )

    folder = VAR_DIR / "reconcile"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    injected: dict[str, Counter[str]] = {}
    started = time.perf_counter()
    for system in ("billing", "erp"):
        injected[system] = seed_system(system, args.invoices, folder, rng, write=not args.skip_seed)
    if not args.skip_seed:
        step(
            f"seeded {args.invoices:,} invoices per system in {time.perf_counter() - started:.1f} s"
        )

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE q2c_invoice")
        cursor.execute("VACUUM ANALYZE masterdata_externalid")

    timings: dict[str, float] = {}
    found: dict[str, Counter[str]] = {}
    for system in ("billing", "erp"):
        seconds, counts = reconcile_timed(system, folder)
        timings[system], found[system] = seconds, counts
        step(f"{system}: reconciled in {seconds:.1f} s, found {dict(sorted(counts.items()))}")
    ceiling = {system: ceiling_timed(system, folder) for system in ("billing", "erp")}
    total, ceiling_total = sum(timings.values()), sum(ceiling.values())
    exact = all(found[s] == injected[s] for s in injected)
    print(
        json.dumps(
            {
                "invoices_per_system": args.invoices,
                "reconcile_seconds": {s: round(t, 2) for s, t in timings.items()},
                "reconcile_total_seconds": round(total, 2),
                "ceiling_seconds": {s: round(t, 2) for s, t in ceiling.items()},
                "ceiling_total_seconds": round(ceiling_total, 2),
                "ratio": round(total / ceiling_total, 2),
                "injected": {s: dict(sorted(c.items())) for s, c in injected.items()},
                "found_equals_injected": exact,
                "under_60_s": total < 60,
            },
            indent=2,
        )
    )
    if not exact:
        raise SystemExit("found is not what was injected")


# --- seeding ----------------------------------------------------------------------------


def seed_system(
    system: str, n: int, folder: Path, rng: random.Random, *, write: bool = True
) -> Counter[str]:
    """Tandem's N invoices from ``system`` and the system's list pages, with drift (what
    was injected only, when not ``write``: the database and files are the last run's)."""
    if not write:  # every kind is injected DRIFT_PER_KIND times
        kinds = ["amount", "tax", "status", f"missing_in_{system}", "missing_in_tandem"]
        return Counter(dict.fromkeys([*kinds, "duplicate_downstream"], DRIFT_PER_KIND))
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from core.audit import Actor
    from masterdata.services.records import account_create, legal_entity_create
    from q2c.models import Invoice

    actor = Actor.system("worker")
    entity = legal_entity_create(
        code=f"LE-{system[:3].upper()}", name=f"Bench {system} Ltd", country="GB",
        currency="GBP", actor=actor, reason="bench setup",
    )  # fmt: skip
    account = account_create(
        legal_name=f"Bench customer {system}", country="GB", currency="GBP",
        legal_entity=entity, actor=actor, reason="bench setup",
    )  # fmt: skip
    content_type = ContentType.objects.get_for_model(Invoice).pk
    prefix = "B" if system == "billing" else "E"
    kinds = ["amount", "tax", "status", f"missing_in_{system}", "missing_in_tandem", "dup"]
    chosen = rng.sample(range(n), DRIFT_PER_KIND * len(kinds))
    drift = {index: kinds[position // DRIFT_PER_KIND] for position, index in enumerate(chosen)}
    now = dt.datetime.now(dt.UTC)
    issued = now.date().isoformat()
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM q2c_invoice")
        first_id = cursor.fetchone()[0] + 1
        cursor.execute("SELECT coalesce(max(id), 0) FROM q2c_order")
        first_order = cursor.fetchone()[0] + 1
    ids = range(first_id, first_id + n)
    orders = max(1, n // INVOICES_PER_ORDER)
    order_columns = (
        "id, enterprise_id, created_at, updated_at, state_changed_at, currency, total_amount, "
        "state, held_from_state, hold_reason, rejection_reason, cancellation_reason, "
        "accepted_at, account_id, legal_entity_id"
    )
    with connection.cursor() as cursor, cursor.copy(f"COPY q2c_order ({order_columns}) FROM STDIN") as copy:  # fmt: skip  # noqa: E501
        for k in range(orders):
            copy.write_row(
                (
                    first_order + k,
                    _order_ref(prefix, k),
                    now,
                    now,
                    now,
                    "GBP",
                    "0",
                    "active",
                    "",
                    "",
                    "",
                    "",
                    now,
                    account.pk,
                    entity.pk,
                )
            )

    def order_of(offset: int) -> int:
        return offset % orders

    def amount(i: int) -> int:
        return 1000 + (i * 7919) % 900000  # minor units

    columns = (
        "id, enterprise_id, created_at, updated_at, state_changed_at, number, account_id, "
        "legal_entity_id, contract_id, order_id, currency, issue_date, due_date, "
        "total_amount, tax_amount, amount_paid, state, posted_at, void_reason"
    )
    with connection.cursor() as cursor, cursor.copy(f"COPY q2c_invoice ({columns}) FROM STDIN") as copy:  # fmt: skip  # noqa: E501
        for offset, pk in enumerate(ids):
            subtotal = amount(offset)
            tax = subtotal // 5
            copy.write_row(
                (
                    pk, f"INV-{prefix}{offset:08d}", now, now, now, f"N{offset}", account.pk,
                    entity.pk, None, first_order + order_of(offset), "GBP", issued, None,
                    _decimal(subtotal + tax), _decimal(tax), "0", "posted", now, "",
                )
            )  # fmt: skip
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY masterdata_externalid (system, object_type, external_id, content_type_id, "
            "object_id, enterprise_id, created_at) FROM STDIN"
        ) as copy,
    ):
        for offset, pk in enumerate(ids):
            copy.write_row(
                (
                    system,
                    "invoice",
                    _remote_id(system, offset),
                    content_type,
                    pk,
                    f"INV-{prefix}{offset:08d}",
                    now,
                )
            )
    injected: Counter[str] = Counter()
    records: list[str] = []
    extra = n
    for offset in range(n):
        kind = drift.get(offset)
        total, tax, status = amount(offset), amount(offset) // 5, "open"
        reference = _order_ref(prefix, order_of(offset))
        if kind == f"missing_in_{system}":
            injected[kind] += 1
            continue
        if kind == "amount":
            total += 100
        elif kind == "tax":  # the same total, split differently
            tax += 7
            total -= 7
        elif kind == "status":
            status = "void"
        if kind in ("amount", "tax", "status"):
            injected[kind] += 1
        records.append(
            _remote(system, _remote_id(system, offset), total, tax, status, issued, reference)
        )
        if kind == "dup":  # the same invoice a second time, under a new id
            injected["duplicate_downstream"] += 1
            records.append(
                _remote(system, _remote_id(system, extra), total, tax, "open", issued, reference)
            )
            extra += 1
        elif kind == "missing_in_tandem":  # of an order Tandem does not know
            injected[kind] += 1
            records.append(
                _remote(system, _remote_id(system, extra), 4200, 0, "open", issued, "ORD-X")
            )
            extra += 1
    _pages_write(system, records, folder / f"{system}.jsonl")
    return injected


def _remote_id(system: str, offset: int) -> str:
    return f"in_{offset:012d}" if system == "billing" else str(8_000_001 + offset)


def _order_ref(prefix: str, k: int) -> str:
    return f"ORD-{prefix}{k:07d}"


def _decimal(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _remote(
    system: str, key: str, total: int, tax: int, status: str, issued: str, reference: str
) -> str:
    """One invoice as the system's listing shows it (its JSON text)."""
    if system == "billing":
        finalized = int(dt.datetime.fromisoformat(issued).replace(tzinfo=dt.UTC).timestamp())
        return json.dumps(
            {"id": key, "object": "invoice", "status": status, "number": key[-8:],
             "currency": "gbp", "total": total + tax, "tax": tax, "amount_paid": 0,
             "subscription": None, "metadata": {"tandem_order": reference},
             "subscription_details": None,
             "status_transitions": {"finalized_at": finalized}},
            separators=(",", ":"),
        )  # fmt: skip
    return json.dumps(
        {"internalId": key, "tranId": f"INV{key}", "externalId": f"{reference}-OT",
         "status": status,
         "currency": {"refName": "GBP"}, "tranDate": issued,
         "total": _decimal(total + tax), "taxTotal": _decimal(tax),
         "amountRemaining": _decimal(total + tax) if status == "open" else "0.00"},
        separators=(",", ":"),
    )  # fmt: skip


def _pages_write(system: str, records: list[str], path: Path) -> None:
    size = BILLING_PAGE if system == "billing" else ERP_PAGE
    with path.open("w") as out:
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            more = "true" if start + size < len(records) else "false"
            if system == "billing":
                out.write(
                    f'{{"object":"list","url":"/billing/invoices","has_more":{more},'
                    f'"data":[{",".join(chunk)}]}}\n'
                )
            else:
                out.write(
                    f'{{"links":[],"count":{len(chunk)},"hasMore":{more},"offset":{start},'
                    f'"totalResults":{len(records)},"items":[{",".join(chunk)}]}}\n'
                )


# --- the run and its ceiling ------------------------------------------------------------


def _file_pages(system: str, path: Path) -> Iterator[list[Any]]:
    """The pages as the connector parses them (its own page parser), then as rows."""
    from orchestration.connectors.sandbox.billing import invoice_page
    from orchestration.connectors.sandbox.erp import erp_page
    from orchestration.connectors.sandbox.erp import invoice_listed as erp_invoice_listed
    from orchestration.reconciliation.sources import remote_invoice

    with path.open() as source:
        for line in source:
            body = json.loads(line)
            page = invoice_page(body) if system == "billing" else erp_page(body, erp_invoice_listed)
            yield [remote_invoice(record) for record in page.records]


def reconcile_timed(system: str, folder: Path) -> tuple[float, Counter[str]]:
    from core.audit import Actor
    from orchestration.reconciliation import sources
    from orchestration.reconciliation.models import DriftItem
    from orchestration.reconciliation.services import Stream, reconciliation_run

    stream = Stream(
        sources.INVOICE_SPECS[system],
        sources.invoice_source(system),
        lambda since: _file_pages(system, folder / f"{system}.jsonl"),
    )
    started = time.perf_counter()
    run = reconciliation_run(system=system, actor=Actor.system("scheduler"), streams=[stream])
    seconds = time.perf_counter() - started
    if run.state != "succeeded":
        raise SystemExit(f"{system} run failed: {run.error}")
    counts = Counter(DriftItem.objects.filter(last_run=run).values_list("drift_type", flat=True))
    return seconds, counts


def ceiling_timed(system: str, folder: Path) -> float:
    """Reading the same rows and nothing else: the Tandem side with COPY, the pages with
    json.loads."""
    from django.db import connection

    query = (
        "SELECT x.external_id, i.enterprise_id, i.currency, i.total_amount, i.tax_amount, "
        "i.amount_paid, i.state, i.issue_date FROM q2c_invoice i JOIN masterdata_externalid x "
        "ON x.object_id = i.id AND x.object_type = 'invoice' "
        "AND x.system = %s"
    )
    started = time.perf_counter()
    rows = 0
    with connection.cursor() as cursor, cursor.copy(f"COPY ({query}) TO STDOUT", [system]) as copy:
        for _ in copy.rows():
            rows += 1
    with (folder / f"{system}.jsonl").open() as source:
        for line in source:
            json.loads(line)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
