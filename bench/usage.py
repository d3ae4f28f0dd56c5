"""Usage in bulk against its ceiling: PostgreSQL COPY of the same rows, in the same run.

Recreates the database named by ``BENCH_USAGE_DATABASE_URL`` (default ``tandem_bench_usage``;
a name without "bench" is refused), migrates it, and makes 20 active contracts with two usage
lines each (half of them amended on 1 July to another price). Then, for N records (default
100 000, as a metering system would send them: JSON strings):

1. the ceiling: ``COPY`` of the rows as ``q2c_usagerecord`` would hold them (ids, rated
   amounts already computed) into a scratch table of the same columns, in one transaction;
2. the bulk path: the records parsed and ingested with ``usage_records_ingest`` in batches
   of the API's maximum (5000, one transaction each), deduplication, rating against the
   version in force on each record's date, history rows and the period reports included
   (not the HTTP layer and JSON decoding of ``POST /api/v1/usage/bulk/``);
3. the first batch sent again: every record a duplicate.

Prints both rates, the ratio (target: at least 25 % of COPY) and checks the row counts.
Uses Redis db 12 (``BENCH_REDIS_URL``) for the report tasks it enqueues, emptied at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common

DATABASE_URL = os.environ.get(
    "BENCH_USAGE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_bench_usage"
)
CONTRACTS = 20
PRODUCTS = ("API-CALLS", "STORAGE-GB")
YEAR = 2026


def _setup_contracts() -> list[str]:
    from core.audit import Actor
    from core.records import BillingPeriod, LineKind
    from masterdata.services import records as md
    from q2c import services

    actor = Actor.system("worker")
    entity = md.legal_entity_create(
        code="UK01", name="Bench Ltd", country="GB", currency="GBP", actor=actor, reason="bench"
    )
    md.product_create(sku="SEATS", name="Seats", kind=LineKind.RECURRING,
                      billing_period=BillingPeriod.MONTH, actor=actor, reason="bench")  # fmt: skip
    for sku in PRODUCTS:
        md.product_create(
            sku=sku, name=sku, kind=LineKind.USAGE, billing_period=BillingPeriod.NONE,
            actor=actor, reason="bench",
        )  # fmt: skip

    def lines(price: str) -> list[services.LineInput]:
        start, end = dt.date(YEAR, 1, 1), dt.date(YEAR, 12, 31)
        seats = services.LineInput(
            product_code="SEATS", kind=LineKind.RECURRING, quantity=Decimal(10),
            unit_price=Decimal("25"), billing_period=BillingPeriod.MONTH, term_start=start,
            term_end=end,
        )  # fmt: skip
        usage = [
            services.LineInput(
                product_code=sku,
                kind=LineKind.USAGE,
                quantity=Decimal(0),
                unit_price=Decimal(price),
                term_start=start,
                term_end=end,
            )
            for sku in PRODUCTS
        ]
        return [seats, *usage]

    ids = []
    for n in range(CONTRACTS):
        account = md.account_create(legal_name=f"Customer {n} Ltd", country="GB", currency="GBP",
                                    legal_entity=entity, actor=actor, reason="bench")  # fmt: skip
        contract = services.contract_create(
            account=account, legal_entity=entity, currency="GBP",
            start_date=dt.date(YEAR, 1, 1), end_date=dt.date(YEAR, 12, 31),
            lines=lines("0.0100"), actor=actor, reason="bench",
        )  # fmt: skip
        services.contract_activate(contract=contract, actor=actor, reason="bench")
        if n % 2:
            services.contract_amend(contract=contract, effective_date=dt.date(YEAR, 7, 1),
                                    lines=lines("0.0080"), actor=actor, reason="bench")  # fmt: skip
        ids.append(contract.enterprise_id)
    return ids


def _records(count: int, contract_ids: list[str], seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    start = dt.datetime(YEAR, 1, 1, tzinfo=dt.UTC)
    span = int((dt.datetime(YEAR, 11, 30, tzinfo=dt.UTC) - start).total_seconds())
    return [
        {
            "usage_id": f"meter-{n:08d}",
            "contract_id": rng.choice(contract_ids),
            "product_code": rng.choice(PRODUCTS),
            "quantity": f"{rng.randint(1, 50000)}.{rng.randint(0, 99):02d}",
            "occurred_at": (start + dt.timedelta(seconds=rng.randrange(span))).isoformat(),
        }
        for n in range(count)
    ]


def _copy_ceiling(records: list[dict[str, str]]) -> float:
    """COPY of the rows as the usage table holds them into a scratch table; seconds taken."""
    from django.db import connection, transaction

    from q2c.models import UsageRecord

    table = UsageRecord._meta.db_table
    columns = [
        "enterprise_id", "created_at", "updated_at", "state_changed_at", "contract_id",
        "product_id", "quantity", "occurred_at", "source_system", "source_event_id", "state",
        "rejection_reason", "contract_version_id", "period_start", "currency", "unit_price",
        "amount", "corrects_id", "superseded",
    ]  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    rows = [
        (f"USG-C{n:08d}", now, now, now, 1, 1, Decimal(r["quantity"]),
         dt.datetime.fromisoformat(r["occurred_at"]), "metering", r["usage_id"], "rated", "",
         1, dt.date(YEAR, 1, 1), "GBP", Decimal("0.0100"), Decimal(r["quantity"]) / 100,
         None, False)
        for n, r in enumerate(records)
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_usage_copy")
        cursor.execute(
            f"CREATE TABLE bench_usage_copy (LIKE {table} INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3
        with raw.copy(f"COPY bench_usage_copy ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def _bulk_path(records: list[dict[str, str]], batch: int) -> tuple[float, int, int, int]:
    """Every record through parse + ingest, ``batch`` per transaction; (seconds, created,
    duplicates, rejected)."""
    from core.audit import Actor
    from q2c.usage import RowError, UsageInput, usage_records_ingest, usage_row_parse

    actor = Actor.system("worker")
    created = duplicates = rejected = 0
    started = time.perf_counter()
    for offset in range(0, len(records), batch):
        rows: list[UsageInput | RowError] = []
        for index, raw in enumerate(records[offset : offset + batch]):
            try:
                rows.append(usage_row_parse(raw))
            except ValueError as exc:
                rows.append(RowError(index, raw.get("usage_id", ""), str(exc)))
        result = usage_records_ingest(
            source_system="metering", rows=rows, actor=actor, reason="usage sent in bulk"
        )
        created += result.created
        duplicates += result.duplicates
        rejected += result.rejected
    return time.perf_counter() - started, created, duplicates, rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000, help="records per ingest (API max)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    name = urlsplit(DATABASE_URL).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to recreate {name!r}: its name must contain 'bench'")
    _common.DATABASE_URL = DATABASE_URL
    env = _common.bench_environment(DATABASE_URL=DATABASE_URL)
    _common.step(f"recreating {name} and migrating")
    _common.database_recreate(env)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    from q2c.models import UsageRecord, UsageReport

    _common.step(_common.machine_summary())
    contract_ids = _setup_contracts()
    records = _records(args.records, contract_ids, args.seed)
    _common.step(f"{len(records)} records over {len(contract_ids)} contracts")

    copy_s = _copy_ceiling(records)
    _common.step(f"COPY: {len(records)} rows in {copy_s:.2f} s")
    bulk_s, created, duplicates, rejected = _bulk_path(records, args.batch)
    _common.step(f"bulk path: {created} created, {duplicates} duplicates, {rejected} rejected "
                 f"in {bulk_s:.2f} s")  # fmt: skip
    again_s, _, again_dup, _ = _bulk_path(records[: args.batch], args.batch)

    history = UsageRecord.history.count()  # type: ignore[attr-defined]
    stored = UsageRecord.objects.count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_usage_copy")
        (copied,) = cursor.fetchone()
        cursor.execute("DROP TABLE bench_usage_copy")
    copy_rate, bulk_rate = len(records) / copy_s, len(records) / bulk_s
    print()
    print(f"records              {len(records)}")
    print(f"COPY (ceiling)       {copy_rate:,.0f} rows/s ({copied} rows)")
    print(f"bulk path            {bulk_rate:,.0f} rows/s ({stored} records, {history} history "
          f"rows, {UsageReport.objects.count()} period reports)")  # fmt: skip
    print(f"ratio bulk / COPY    {bulk_rate / copy_rate:.0%} (target >= 25%)")
    print(f"a batch sent again   {args.batch / again_s:,.0f} rows/s, {again_dup} duplicates")
    _common.redis_flush()
    ok = stored == history == len(records) == copied and again_dup == args.batch
    if not ok:
        raise SystemExit("row counts do not match")


if __name__ == "__main__":
    main()
