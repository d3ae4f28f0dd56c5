"""Chaos soak: quote to cash through the sandbox with faults on while the infrastructure dies.

Starts what ``bench/rehearsal.py`` starts (the sandbox, gunicorn receiving its webhooks,
Celery workers and beat on PostgreSQL) on a fresh database of its own (``tandem_chaos_bench``,
or ``BENCH_DATABASE_URL``), with a ``redis-server`` of its own as the broker (a free loopback
port, a temporary directory; the shared Redis is never touched). It then runs
``manage.py simulate --quotes N --chaos heavy`` (the sandbox's faults: errors, throttling,
responses lost after commit, duplicated and reordered webhooks) and meanwhile:

- SIGKILLs the oldest worker every ``--kill-every`` seconds and starts a new one;
- restarts its Redis once (every queued and unacked message is lost with it);
- terminates the workers' PostgreSQL backends once (``pg_terminate_backend``, only those of
  this database opened by the workers, named by their ``application_name``).

The workers run with a short step lease and quick sweeps (``STEP_LEASE_SECONDS`` and the
other recovery settings below), so the rows, not the lost messages, bring the work back. When
``simulate`` is done the killing stops, the system settles, and the invariant checker
(``bench/chaos_invariants.py``) prints its counts as JSON; the exit status is 1 on any loss or
duplicate (or when ``simulate`` itself failed).

Run: ``.venv/bin/python bench/chaos.py [--quotes 300] [--kill-every 6] [--seed 1]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Before bench._common reads them: this soak's own database and its own Redis.
REDIS_PORT = _loopback_port()
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_chaos_bench")
os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"

from bench._common import (  # noqa: E402
    BIN,
    DATABASE_URL,
    REDIS_URL,
    Children,
    children,
    database_recreate,
    free_port,
    gunicorn_start,
    http_wait,
    machine_summary,
    step,
)
from bench.pipeline import pipeline_environment  # noqa: E402

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
WORKER_APP_NAME = "tandem-chaos-worker"
WORKERS = 3
WORKER_CONCURRENCY = 4
# Recovery tuned for the soak: a short lease, sweeps every 2 s, lost messages re-sent after
# 15 s, a circuit that opens for a second only.
RECOVERY_ENV = {
    "STEP_LEASE_SECONDS": "5",
    "STEP_SWEEP_SECONDS": "2",
    "STEP_QUEUED_GRACE_SECONDS": "15",
    "INBOUND_RECEIVED_GRACE_SECONDS": "15",
    "INBOUND_SWEEP_SECONDS": "5",
    "CIRCUIT_OPEN_SECONDS": "1",
}


class OwnRedis:
    """A redis-server of the soak's own: no persistence, a temporary directory, stopped by
    its PID."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.directory = Path(tempfile.mkdtemp(prefix="tandem-chaos-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory)]  # fmt: skip
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (fixed argv)
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class Workers:
    """The soak's Celery workers; one is killed and replaced at a time."""

    def __init__(self, kids: Children, env: dict[str, str]) -> None:
        self.kids = kids
        self.env = {**env, "DATABASE_URL": f"{DATABASE_URL}?application_name={WORKER_APP_NAME}"}
        self.alive: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started = 0
        self.killed = 0

    def start(self) -> None:
        from django.conf import settings

        self.started += 1
        name = f"chaos-worker{self.started}"
        argv = [str(BIN / "celery"), "-A", "tandem", "worker", "-Q",
                ",".join(settings.TANDEM_QUEUES), "--hostname", f"{name}-{os.getpid()}@127.0.0.1",
                "--pool", "threads", "-c", str(WORKER_CONCURRENCY), "--loglevel", "INFO",
                "--without-gossip", "--without-mingle"]  # fmt: skip
        self.alive.append((name, self.kids.start(name, argv, self.env)))

    def kill_oldest(self) -> None:
        name, process = self.alive.pop(0)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.kids.running.remove((name, process))
        self.killed += 1
        step(f"SIGKILLed {name} (pid {process.pid})")


def _migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def database_prepare(env: dict[str, str]) -> None:
    """A fresh, migrated soak database. Migrating takes minutes on a busy machine, so the
    first run keeps a migrated copy (``<name>_tpl_<digest of every migration>``) and later
    runs clone it (seconds); a copy of other migrations is dropped."""
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    template = f"{name}_tpl_{_migrations_digest()}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        known = {
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{name}_tpl_%"]
            )
        }
        if template in known:
            step(f"cloning {name} from {template}")
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return
    step(f"recreating and migrating {name} (kept as {template} for the next run)")
    database_recreate(env)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for stale in known:
            conn.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{template}" TEMPLATE "{name}"')


def backends_terminate() -> int:
    """Terminate the workers' connections to this soak's database; how many."""
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[-1]
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            [name, WORKER_APP_NAME],
        ).fetchone()
    return int(row[0]) if row else 0


def chaos_loop(
    *, workers: Workers, redis: OwnRedis, done: threading.Event, kill_every: float,
    events: dict[str, Any],
) -> None:  # fmt: skip
    """Kill a worker every ``kill_every`` s; restart Redis once (after 2 kills) and terminate
    the workers' database backends once (after 3), until ``done``."""
    rng = random.Random(7)
    kills = 0
    while not done.wait(kill_every * rng.uniform(0.8, 1.2)):
        workers.kill_oldest()
        workers.start()
        kills += 1
        if kills == 2:
            step("restarting the soak's Redis (every queued message is lost)")
            redis.kill()
            time.sleep(1.0)
            redis.start()
            events["redis_restarts"] += 1
        if kills == 3:
            terminated = backends_terminate()
            events["backends_terminated"] += terminated
            step(f"terminated {terminated} PostgreSQL backends of the workers")


def settle(timeout_s: float) -> bool:
    """Wait until no step or event is still in flight (queued, running, retrying, received)."""
    from django.db import connections

    from orchestration.models import InboundEvent, InboundStatus
    from orchestration.workflows.models import StepRun, StepState

    in_flight = [StepState.QUEUED, StepState.RUNNING, StepState.RETRY_SCHEDULED]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        connections.close_all()
        steps = StepRun.objects.filter(state__in=in_flight).count()
        events = InboundEvent.objects.filter(
            status=InboundStatus.RECEIVED, signature_valid=True
        ).count()
        if steps == 0 and events == 0:
            return True
        time.sleep(1.0)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quotes", type=int, default=300)
    parser.add_argument("--kill-every", type=float, default=6.0, help="seconds between kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--settle", type=float, default=180.0, help="seconds to settle after")
    args = parser.parse_args()

    started = time.monotonic()
    step(f"machine: {machine_summary()}")
    redis = OwnRedis(REDIS_PORT)
    redis.start()
    step(f"own redis-server on 127.0.0.1:{REDIS_PORT} (pid {redis.process.pid})")  # type: ignore[union-attr]
    try:
        code = _soak(args, redis, started)
    finally:
        redis.stop()
        step(f"stopped the soak's redis-server; {time.monotonic() - started:.0f} s in all")
    raise SystemExit(code)


def _soak(args: argparse.Namespace, redis: OwnRedis, started: float) -> int:
    tandem_port = free_port()
    sandbox_port = free_port(taken=[tandem_port])
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {**pipeline_environment(sandbox_url), **RECOVERY_ENV}
    os.environ.update(env)
    import django

    django.setup()
    database_prepare(env)
    from tests.integration.q2c_env import catalog_seed

    catalog_seed()
    events = {"redis_restarts": 0, "backends_terminated": 0}
    with children() as kids:
        kids.start("chaos-sandbox", [sys.executable, "manage.py", "sandbox", "--port",
                   str(sandbox_port), "--seed", str(args.seed), "--webhook-url",
                   f"http://127.0.0.1:{tandem_port}/webhooks/"], env)  # fmt: skip
        http_wait(sandbox_port, "/_control/health", kids)
        gunicorn_start(kids, name="chaos-gunicorn", port=tandem_port, env=env)
        workers = Workers(kids, env)
        for _ in range(WORKERS):
            workers.start()
        kids.start("chaos-beat", [str(BIN / "celery"), "-A", "tandem", "beat", "--loglevel",
                   "INFO", "-s", str(Path("var") / "bench" / "chaos-beat")], env)  # fmt: skip
        step(f"sandbox on {sandbox_url}, Tandem on port {tandem_port}, {WORKERS} workers x "
             f"{WORKER_CONCURRENCY} threads, beat, broker {REDIS_URL}")  # fmt: skip
        done = threading.Event()
        loop = {"workers": workers, "redis": redis, "done": done,
                "kill_every": args.kill_every, "events": events}  # fmt: skip
        chaos = threading.Thread(target=chaos_loop, kwargs=loop, daemon=True)
        command = [sys.executable, "manage.py", "simulate", "--quotes", str(args.quotes),
                   "--chaos", "heavy", "--seed", str(args.seed), "--sandbox-url", sandbox_url,
                   "--timeout", str(args.timeout)]  # fmt: skip
        simulate_log = Path("var") / "bench" / "chaos-simulate.log"  # its summary, its progress
        chaos.start()
        try:
            with simulate_log.open("wb") as out:
                simulated = subprocess.run(  # noqa: S603 (our own command)
                    command, env={**os.environ, **env}, stdout=out, stderr=out, check=False
                )
        finally:  # no worker is started behind the children's stop
            done.set()
            chaos.join()
        step(f"simulate exited {simulated.returncode}; the killing stopped "
             f"({workers.killed} workers killed); settling")  # fmt: skip
        settled = settle(args.settle)
        from bench.chaos_invariants import invariants_check, observe
        from demo.simulate import Sandbox

        counts = invariants_check(observe(Sandbox(url=sandbox_url)))
    counts = {
        **counts,
        "workers_killed": workers.killed,
        **events,
        "settled": settled,
        "simulate_exit": simulated.returncode,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(counts, indent=2), flush=True)
    passed = counts["ok"] and simulated.returncode == 0 and settled
    passed = passed and workers.killed > 0 and events["redis_restarts"] == 1
    return 0 if passed and events["backends_terminated"] > 0 else 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
