"""Duplicate detection on 100k accounts: time, phases, pairs completeness, precision/recall/F1.

    .venv/bin/python bench/duplicates.py                      # --accounts 100000
    .venv/bin/python bench/duplicates.py --accounts 20000 --keep   # reuse the seeded database

Recreates the database named by ``BENCH_DUPLICATES_DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/tandem_bench_duplicates``), seeds it in bulk with the
labelled set of ``masterdata.synthetic`` (companies, their duplicates as other systems keyed
them, and hard negatives), then runs the same job as ``manage.py detect_duplicates`` and the
beat schedule, timed end to end (reading the accounts, normalizing, blocking, comparing,
learning the weights, scoring, clustering, storing the candidates). It prints the machine's
load beside the figures, each phase, the pairs each blocking pass added, pairs completeness
(true pairs blocking kept) beside the reduction ratio, precision/recall/F1 of what was
stored (sites of one organisation left out, as by default) against the labels, and the same
at other thresholds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_DUPLICATES_DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/tandem_bench_duplicates",
)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tandem.settings",
            "DATABASE_URL": DATABASE_URL,
            "DEBUG": "1",
            "CELERY_BROKER_URL": "memory://",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def database_recreate(env: dict[str, str]) -> None:
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing an odd database name {name!r}")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="reuse an already seeded database")
    args = parser.parse_args()

    env = environment()
    if not args.keep:
        step(f"recreating {urlsplit(DATABASE_URL).path.lstrip('/')} and migrating")
        database_recreate(env)
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from core.audit import Actor
    from masterdata.identity import account_keys
    from masterdata.matching.blocking import block, pairs_completeness
    from masterdata.matching.compare import TokenWeights
    from masterdata.matching.pipeline import match
    from masterdata.models import Account, DuplicateCandidate
    from masterdata.services.duplicates import _active_rows, duplicates_detect
    from masterdata.synthetic import labelled_set

    step(f"generating the labelled set ({args.accounts} accounts, seed {args.seed})")
    labelled = labelled_set(companies=args.accounts, seed=args.seed)
    key_of_pk: dict[int, str] = {}
    if not args.keep or not Account.objects.exists():
        step("seeding accounts in bulk")
        started = time.perf_counter()
        batch = []
        for n, synthetic in enumerate(labelled.accounts, start=1):
            batch.append(
                Account(
                    enterprise_id=f"ACC-B{n:07d}",
                    legal_name=synthetic.legal_name,
                    country=synthetic.country,
                    currency=synthetic.currency,
                    tax_id=synthetic.tax_id,
                    domain=synthetic.domain,
                    address_line1=synthetic.address_line1,
                    city=synthetic.city,
                    postcode=synthetic.postcode,
                    phone=synthetic.phone,
                    email=synthetic.email,
                    **account_keys(
                        legal_name=synthetic.legal_name,
                        country=synthetic.country,
                        tax_id=synthetic.tax_id,
                        domain=synthetic.domain,
                        email=synthetic.email,
                    ),
                )
            )
        # Seed data for a benchmark: plain bulk_create (no history rows) keeps seeding fast;
        # Tandem itself never writes accounts this way.
        Account.objects.bulk_create(batch, batch_size=5000)
        step(f"seeded {len(batch)} accounts in {time.perf_counter() - started:.1f} s")
    key_of_pk = {
        pk: labelled.accounts[int(eid[5:]) - 1].key
        for pk, eid in Account.objects.values_list("pk", "enterprise_id")
    }
    DuplicateCandidate.objects.all().delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE masterdata_account")

    threshold = settings.TANDEM_DUPLICATE_THRESHOLD
    step(f"detect_duplicates (threshold {threshold})")
    load_before = os.getloadavg()
    cpu = time.process_time()
    summary = duplicates_detect(actor=Actor.system("scheduler"))
    cpu = time.process_time() - cpu
    load_after = os.getloadavg()
    stored = {
        frozenset((key_of_pk[a], key_of_pk[b]))
        for a, b in DuplicateCandidate.objects.exclude(pattern="sites").values_list(
            "account_a_id", "account_b_id"
        )
    }
    flagged = {
        frozenset((key_of_pk[a], key_of_pk[b]))
        for a, b in DuplicateCandidate.objects.filter(pattern="sites").values_list(
            "account_a_id", "account_b_id"
        )
    }
    truth = labelled.duplicate_pairs
    hits = len(stored & truth)
    all_hits = len((stored | flagged) & truth)
    precision = hits / max(1, len(stored))
    recall = hits / max(1, len(truth))
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)

    step("pairs completeness: blocking again over the same accounts (not timed)")
    rows = _active_rows()
    index_of = {row.pk: index for index, row in enumerate(rows)}
    pk_of_key = {key: pk for pk, key in key_of_pk.items()}
    blocking = block(rows, TokenWeights(row.name for row in rows))
    completeness = pairs_completeness(
        blocking, [tuple(index_of[pk_of_key[key]] for key in pair) for pair in truth]
    )
    model = summary.model or {}
    print()
    print(f"machine load (1/5/15 min) {load_before} before, {load_after} after")
    print(f"accounts                 {summary.accounts}")
    print(f"time (end to end)        {summary.seconds:.1f} s   (this process's CPU: {cpu:.1f} s)")
    print(f"phases (s)               {summary.timings}")
    print(f"pairs by blocking pass   {summary.by_pass}")
    print(f"pairs compared           {summary.pairs_scored}  (every field)")
    print(f"reduction ratio          {summary.reduction_ratio:.6f}")
    print(f"pairs completeness       {completeness:.4f}  (true pairs blocking kept)")
    print(
        f"model                    prior {model.get('prior', 0):.3g}, "
        f"{model.get('iterations')} EM iterations, converged {model.get('converged')}"
    )
    print(
        f"candidates stored        {summary.found}  ({summary.sites} flagged as sites, "
        f"{summary.clusters} clusters)"
    )
    print(f"labelled duplicate pairs {len(truth)}")
    print(f"precision                {precision:.4f}")
    print(f"recall                   {recall:.4f}")
    print(f"F1                       {f1:.4f}")
    print(
        f"counting the {len(flagged)} flagged sites as duplicates too: precision "
        f"{all_hits / max(1, len(stored | flagged)):.4f}, "
        f"recall {all_hits / max(1, len(truth)):.4f}"
    )

    step("precision / recall / F1 by threshold (in memory, same records)")
    result = match(rows, threshold=0.1)
    print("threshold  precision  recall      F1  candidates")
    for cut in (0.1, 0.3, 0.5, 0.7, 0.9):
        found = {
            frozenset((key_of_pk[p.a], key_of_pk[p.b]))
            for p in result.duplicates if p.probability >= cut
        }  # fmt: skip
        tp = len(found & truth)
        p_, r_ = tp / max(1, len(found)), tp / max(1, len(truth))
        print(
            f"{cut:9.1f}  {p_:9.4f}  {r_:6.4f}  {2 * p_ * r_ / max(p_ + r_, 1e-9):6.4f}  "
            f"{len(found):10d}"
        )


if __name__ == "__main__":
    main()
