"""Real Celery worker subprocesses for integration tests.

A worker started here runs ``celery -A tandem worker`` on every Tandem queue against the database
pytest-django created for this run and the broker the test process publishes to, so a task the
test enqueues is consumed by a separate process exactly as in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from celery.utils.nodenames import host_format
from django.conf import settings
from django.db import connection

from tandem.celery import app
from tandem.models import WorkerHeartbeat
from tandem.tasks import worker_heartbeat
from tests.logscan import watch_file

READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 20.0
WORKER_QUEUES = ",".join(settings.TANDEM_QUEUES)


def database_url_for_tests() -> str:
    """A DATABASE_URL for the database this test run uses (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError(f"no DATABASE_URL scheme for {db['ENGINE']}")
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"


def broker_flush() -> None:
    """Drop every message and binding left on this run's broker by earlier runs."""
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
    elif url.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "control_folder", "processed_folder"):
            folder = Path(str(options[key]))
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
    else:
        raise RuntimeError(f"do not know how to flush broker {url.split('@')[-1]}")


@dataclass
class WorkerHandle:
    """One worker subprocess: its node name, its PID and its log file."""

    hostname: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = STOP_DEADLINE_S) -> int:
        """Warm shutdown (SIGTERM: finish running tasks); SIGKILL if it does not exit in time."""
        if self.is_running():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def kill(self) -> int:
        """SIGKILL, as when a machine dies: running tasks are interrupted, nothing is acked."""
        if self.is_running():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_DEADLINE_S)
        return int(self.process.returncode)

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Wait until this worker answers a ping and a heartbeat task has run end to end."""
        deadline = time.monotonic() + deadline_s
        while not self._answers_ping():
            self._check_alive_before(deadline, "answer a ping")
        # The heartbeat goes through the broker, the worker and the database: it proves the
        # worker consumes the default queue and writes to the test database.
        WorkerHeartbeat.objects.all().delete()
        worker_heartbeat.delay()
        while not WorkerHeartbeat.objects.exists():
            self._check_alive_before(deadline, "record a heartbeat")
            time.sleep(0.2)

    def _answers_ping(self) -> bool:
        replies = app.control.ping(destination=[self.hostname], timeout=0.5)
        return any(self.hostname in reply for reply in replies)

    def _check_alive_before(self, deadline: float, what: str) -> None:
        if not self.is_running():
            pytest.fail(
                f"worker {self.hostname} exited with {self.process.returncode} before it could "
                f"{what}; its log:\n{self.log()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"worker {self.hostname} did not {what} in time; its log:\n{self.log()}")


def worker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, pointed at this run's test database and broker."""
    env = dict(os.environ)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tandem.settings_test",
            "DATABASE_URL": database_url_for_tests(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "TANDEM_VAR_DIR": str(settings.VAR_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def worker_start(
    *, log_path: Path, concurrency: int = 2, extra_env: dict[str, str] | None = None
) -> WorkerHandle:
    """Launch a worker with a unique node name, its output going to ``log_path``.

    ``extra_env`` overrides settings for this worker only (e.g. a short
    ``CELERY_VISIBILITY_TIMEOUT`` so a killed worker's messages come back quickly).
    """
    name = f"test-{uuid.uuid4().hex[:12]}@%h"
    celery = str(Path(sys.executable).with_name("celery"))
    argv = [celery, "-A", "tandem", "worker", "-Q", WORKER_QUEUES, "--pool", "threads",
            "-c", str(concurrency), "--loglevel", "INFO", "--hostname", name]  # fmt: skip
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(  # noqa: S603 (fixed argument list, our own binary)
            argv,
            cwd=settings.BASE_DIR,
            env=worker_environment(extra_env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    watch_file(log_path)  # its log output goes through the personal-data detector too
    return WorkerHandle(hostname=host_format(name), process=process, log_path=log_path)
