"""What both benchmarks share: the environment, the database, child processes, a load loop.

Everything runs on loopback: PostgreSQL and Redis must answer; servers listen on 127.0.0.1
on ports 8600-8699. Child processes are started in their own session and stopped by PID
(SIGTERM, then SIGKILL) when the benchmark ends, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
VAR_DIR = ROOT / "var" / "bench"
PORTS = range(8600, 8700)
# The ceiling view's table (bench/ceiling_urls.py), created by bench/ingest.py.
CEILING_TABLE = "bench_ceiling"

# One web setting for every benchmark. gthread (2 processes x 4 threads) on 2 cores: one
# process per core, and threads that overlap their database and Redis waits; unlike the
# sync worker it keeps client connections alive, as a proxy in front of it would.
# BENCH_GUNICORN_ARGS replaces them (e.g. "--workers 4" to try the sync worker).
GUNICORN_ARGS = [
    *os.environ.get(
        "BENCH_GUNICORN_ARGS", "--workers 2 --worker-class gthread --threads 4"
    ).split(),
    *("--backlog", "2048", "--no-control-socket"),
]


def bench_environment(**extra: str) -> dict[str, str]:
    """Production settings (DEBUG off) pointed at the benchmark's database and Redis db."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "WEBHOOK_"))}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tandem.settings",
            "DATABASE_URL": DATABASE_URL,
            "CELERY_BROKER_URL": REDIS_URL,
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "STATIC_MANIFEST": "0",
            "TANDEM_VAR_DIR": str(VAR_DIR),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the database and the broker -------------------------------------------------------------


def database_recreate(env: dict[str, str]) -> None:
    """Drop and create the benchmark database, then migrate it (about 15 s)."""
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing an odd database name {name!r}")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def redis_flush() -> None:
    """Empty the benchmark's own Redis database (never another one)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


# --- child processes -------------------------------------------------------------------------


def free_port(taken: Sequence[int] = ()) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port between 8600 and 8699")


@dataclass
class Children:
    """Processes this benchmark started; ``stop`` ends each of them by its PID."""

    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        log_path = VAR_DIR / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 (fixed argv of our own binaries)
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop them in order
            )
        self.running.append((name, process))
        step(f"started {name} (pid {process.pid}, log {log_path.relative_to(ROOT)})")
        return process

    def check_alive(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                raise SystemExit(
                    f"{name} exited with {process.returncode}; see var/bench/{name}.log"
                )

    def stop(self) -> None:
        for _name, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(self.running):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                step(f"{name} (pid {process.pid}) ignored SIGTERM; killing it")
                process.kill()
                process.wait(timeout=10)
        self.running.clear()


@contextlib.contextmanager
def children() -> Iterator[Children]:
    """Children stopped on every exit path, including SIGTERM to this script."""
    started = Children()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield started
    finally:
        started.stop()
        signal.signal(signal.SIGTERM, previous)


def gunicorn_start(
    kids: Children, *, name: str, port: int, env: dict[str, str], app: str = "tandem.wsgi"
) -> None:
    argv = [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", *GUNICORN_ARGS]
    kids.start(name, argv, env)
    http_wait(port, "/webhooks/cpq/", kids)


def http_wait(port: int, path: str, kids: Children, timeout_s: float = 60.0) -> None:
    """Wait until something answers HTTP on ``port`` (any status)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                if conn.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port} within {timeout_s:.0f} s")


# --- a small HTTP load loop ------------------------------------------------------------------


def http_request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 request as bytes, ready to send as is."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    """A keep-alive connection speaking just enough HTTP/1.1 to read one answer at a time."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.buffer = b""

    def exchange(self, request: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout_s)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, close = 0, False
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        while len(self.buffer) < length:
            self._fill()
        self.buffer = self.buffer[length:]
        if close:
            self.close()
        return status

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None


@dataclass
class LoadResult:
    sent: int
    elapsed_s: float
    latencies_s: list[float]
    statuses: Counter[int]
    errors: Counter[str]

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile(self.latencies_s, p) * 1000


def load_run(
    port: int, requests: Sequence[bytes], *, concurrency: int, time_limit_s: float = 120.0
) -> LoadResult:
    """Send every request once, ``concurrency`` at a time, each thread on its own connection.

    Stops early (and says so through ``sent``) if ``time_limit_s`` runs out.
    """
    lock = threading.Lock()
    position = iter(range(len(requests)))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + time_limit_s
    sent = 0

    def worker() -> None:
        nonlocal sent
        conn = _Connection(port, timeout_s=30.0)
        mine: list[float] = []
        my_statuses: Counter[int] = Counter()
        my_errors: Counter[str] = Counter()
        try:
            while time.monotonic() < deadline:
                with lock:
                    index = next(position, None)
                    if index is None:
                        break
                    sent += 1
                started = time.perf_counter()
                try:
                    status = conn.exchange(requests[index])
                except (OSError, ValueError, IndexError) as exc:
                    my_errors[type(exc).__name__] += 1
                    conn.close()
                    continue
                mine.append(time.perf_counter() - started)
                my_statuses[status] += 1
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)
                statuses.update(my_statuses)
                errors.update(my_errors)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(sent, elapsed, latencies, statuses, errors)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def machine_summary() -> str:
    cpus = os.cpu_count() or 0
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[0]
    return f"{cpus} CPUs ({model or 'unknown model'}), load average {load or '?'} at start"


# --- where the CPU went ----------------------------------------------------------------------


def _proc_stat(pid: str) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds used) of one process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def cpu_snapshot(kids: Children) -> Counter[str]:
    """CPU seconds used so far, by our children (with their descendants), PostgreSQL, Redis,
    this script, and everything else on the machine."""
    stats = {pid: s for pid in os.listdir("/proc") if pid.isdigit() and (s := _proc_stat(pid))}
    ours = {str(p.pid): name for name, p in kids.running}
    ours[str(os.getpid())] = "this script"
    used: Counter[str] = Counter()
    for pid, (name, _ppid, seconds) in stats.items():
        label, cursor, hops = None, pid, 0
        while cursor in stats and hops < 8:
            if cursor in ours:
                label = ours[cursor]
                break
            cursor, hops = str(stats[cursor][1]), hops + 1
        if label is None:
            label = {"postgres": "postgres", "redis-server": "redis"}.get(name, "other processes")
        used[label] += seconds
    return used


def cpu_report(before: Counter[str], after: Counter[str], elapsed_s: float) -> str:
    lines = [f"CPU used over {elapsed_s:.1f} s (cores busy on average):"]
    spent = {k: after[k] - before.get(k, 0.0) for k in after}
    for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds >= 0.05:
            lines.append(f"  {label:<24}{seconds:8.1f} s  {seconds / elapsed_s:5.2f}")
    return "\n".join(lines)
