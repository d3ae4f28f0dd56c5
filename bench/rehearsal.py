"""Rehearsal: ``manage.py simulate`` on the production shape, with chaos.

Starts what ``bench/pipeline.py`` starts (the sandbox, gunicorn receiving its webhooks, two
Celery workers on PostgreSQL and Redis, plus celery beat for the sweepers) on a fresh
benchmark database, then runs ``manage.py simulate --quotes N --chaos PROFILE`` against it and
prints its JSON summary and exit status. This is the acceptance run of the quote-to-cash
issue: zero duplicates downstream and every quote accounted for.

Run: ``.venv/bin/python bench/rehearsal.py [--quotes 500] [--chaos heavy] [--seed 1]``

With ``--systems tryton-stripe`` the ERP is a real ``trytond`` and billing is localstripe,
both started on loopback from the test helpers (tests/realsystems/) and stopped by their PID
at the end; Tandem confirms the sales it creates (``CONNECTOR_ERP_TRYTON_CONFIRM=1``), the beat
polls Tryton every 2 s, Tryton's answers are awaited 30 s, and every Stripe customer gets the
test card. The sandbox still plays
CPQ, CRM, tax and payments; use ``--chaos none`` (the faults are the sandbox's).

``--scenario lifecycle --contracts N`` runs ``simulate --scenario lifecycle`` instead (the
first orders, then upgrades, downgrades, renewals, cancellations and stale changes); with
``--systems tryton-stripe`` it then counts, per contract of the benchmark database, what
Tryton and Stripe hold against Tandem's contract versions (``demo/real_books.py``), prints
a JSON summary per system and exits non-zero on any disagreement or duplicate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BIN,
    GUNICORN_ARGS,
    children,
    database_recreate,
    free_port,
    gunicorn_start,
    http_wait,
    machine_summary,
    redis_flush,
    step,
)
from bench.pipeline import WORKER_CONCURRENCY, WORKERS, pipeline_environment, workers_start
from bench.pipeline import workers_wait as workers_ping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quotes", type=int, default=500)
    parser.add_argument("--chaos", default="heavy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--systems", choices=["sandbox", "tryton-stripe"], default="sandbox")
    parser.add_argument("--scenario", choices=["quote-to-cash", "lifecycle"],
                        default="quote-to-cash")  # fmt: skip
    parser.add_argument("--contracts", type=int, default=50, help="lifecycle: contracts to change")
    parser.add_argument("--books-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.books_only:  # in a child given the systems' environment (see _rehearse)
        import django

        django.setup()
        raise SystemExit(_real_books_check())

    step(f"machine: {machine_summary()}")
    tandem_port = free_port()
    sandbox_port = free_port(taken=[tandem_port])
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = pipeline_environment(sandbox_url)
    os.environ.update(env)
    import django

    django.setup()
    step("recreating and migrating the benchmark database")
    database_recreate(env)
    redis_flush()
    from tests.integration.q2c_env import catalog_seed

    catalog_seed()
    real_systems = _real_systems_start(env) if args.systems == "tryton-stripe" else []
    try:
        code = _rehearse(args, env, tandem_port=tandem_port, sandbox_port=sandbox_port,
                         real_systems=real_systems)  # fmt: skip
    finally:
        for server in real_systems:
            server.stop()
    redis_flush()
    raise SystemExit(code)


def _real_systems_start(env: dict[str, str]) -> list[Any]:
    """trytond and localstripe on loopback; ``env`` is pointed at them."""
    from tests.realsystems.localstripe_server import localstripe_start, stripe_environment
    from tests.realsystems.tryton_server import tryton_start

    directory = (Path("var") / "bench" / "rehearsal-systems").resolve()
    shutil.rmtree(directory, ignore_errors=True)
    tryton = tryton_start(directory / "tryton")
    stripe = localstripe_start(log_path=directory / "localstripe.log")
    env.update(tryton.environment() | stripe_environment(stripe))
    env.update(
        {
            "CONNECTOR_ERP_TRYTON_CONFIRM": "1",
            "CONNECTOR_ERP_READ_TIMEOUT": "30",  # trytond on SQLite: writers queue for the lock
            "CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD": "pm_card_visa",
            "POLL_INTERVAL_SECONDS": "2",
        }
    )
    os.environ.update(env)
    step(f"trytond on {tryton.url} (pid {tryton.pid}), localstripe on {stripe.url} "
         f"(pid {stripe.pid})")  # fmt: skip
    return [tryton, stripe]


def _rehearse(
    args: argparse.Namespace, env: dict[str, str], *, tandem_port: int, sandbox_port: int,
    real_systems: list[Any],
) -> int:  # fmt: skip
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    with children() as kids:
        kids.start("rehearsal-sandbox", [sys.executable, "manage.py", "sandbox",
                   "--port", str(sandbox_port), "--seed", str(args.seed),
                   "--webhook-url", f"http://127.0.0.1:{tandem_port}/webhooks/"], env)  # fmt: skip
        http_wait(sandbox_port, "/_control/health", kids)
        gunicorn_start(kids, name="rehearsal-gunicorn", port=tandem_port, env=env)
        for server in real_systems:
            if hasattr(server, "webhook_register"):  # localstripe signs and sends its events
                server.webhook_register(f"http://127.0.0.1:{tandem_port}/webhooks/billing/")
        names = workers_start(kids, env, pool="threads", profile="")
        kids.start("rehearsal-beat", [str(BIN / "celery"), "-A", "tandem", "beat", "--loglevel",
                   "INFO", "-s", str(Path("var") / "bench" / "rehearsal-beat")], env)  # fmt: skip
        workers_ping(kids, names)
        step(f"sandbox on {sandbox_url}, gunicorn {' '.join(GUNICORN_ARGS)} on port "
             f"{tandem_port}, {WORKERS} workers x {WORKER_CONCURRENCY} threads, beat")  # fmt: skip
        started = time.monotonic()
        command = [sys.executable, "manage.py", "simulate", "--scenario", args.scenario,
                   "--quotes", str(args.quotes), "--contracts", str(args.contracts),
                   "--chaos", args.chaos, "--seed", str(args.seed), "--sandbox-url", sandbox_url,
                   "--timeout", str(args.timeout)]  # fmt: skip
        result = subprocess.run(command, env={**os.environ, **env}, check=False)  # noqa: S603
        step(f"simulate exited {result.returncode} after {time.monotonic() - started:.0f} s")
    if args.scenario == "lifecycle" and real_systems:
        # a child process: this one's settings were read before the systems' were known
        books = subprocess.run([sys.executable, __file__, "--books-only"],  # noqa: S603
                               env={**os.environ, **env}, check=False)  # fmt: skip
        return result.returncode or books.returncode
    return result.returncode


def _real_books_check() -> int:
    """Count, per contract of the benchmark database (all made by this run), what Tryton and
    Stripe hold against Tandem's versions; print the JSON; non-zero on any disagreement or
    duplicate."""
    from demo.real_books import real_books
    from q2c.models import Contract

    started = time.monotonic()
    contracts = list(
        Contract.objects.order_by("enterprise_id").values_list("enterprise_id", flat=True)
    )
    books = real_books(contracts)
    print(json.dumps({name: system.as_dict() for name, system in books.items()}, indent=2))
    step(f"books of {len(contracts)} contracts counted in {time.monotonic() - started:.0f} s")
    return 0 if all(system.ok for system in books.values()) else 1


if __name__ == "__main__":
    main()
