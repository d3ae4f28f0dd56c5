"""Run the whole demo on one machine: migrate, seed, then the web server and a Celery worker.

The children share this process's environment (so the same SQLite file and filesystem
broker), their output is forwarded with a name prefix, and Ctrl-C or SIGTERM stops them all
and exits 0. If one child dies, the others are stopped and the command exits non-zero.
"""

from __future__ import annotations

import os
import socket
import sys
from io import StringIO
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from q2c.env import envint
from q2c.supervisor import ChildSpec, Supervisor

READY_TIMEOUT_SECONDS = 60


def demo_children(*, port: int) -> list[ChildSpec]:
    """The processes the demo runs; add one here to run it beside the others."""
    manage = str(settings.BASE_DIR / "manage.py")
    web = [sys.executable, manage, "runserver", f"127.0.0.1:{port}", "--noreload"]
    worker = [
        sys.executable, "-m", "celery", "-A", "q2c", "worker", "-B",
        "-Q", ",".join(settings.TANDEM_QUEUES), "--pool", "threads", "-c", "4",
        "--loglevel", "INFO",
    ]  # fmt: skip
    return [ChildSpec("web", web), ChildSpec("worker", worker)]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = (
        "Migrate, seed the demo users and data, then serve the console on "
        "http://127.0.0.1:$DEMO_PORT (default 8000) with a Celery worker and beat. "
        "Ctrl-C stops everything."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--stop-timeout",
            type=float,
            default=10.0,
            help="seconds to wait for the children to stop before killing them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = envint("DEMO_PORT", 8000, minimum=1)
        if _port_open(port):
            raise CommandError(f"port {port} on 127.0.0.1 is in use; set DEMO_PORT to another")
        call_command("migrate", interactive=False, verbosity=1, stdout=self.stdout)
        seeded = StringIO()
        call_command("seed_demo", stdout=seeded)
        if not settings.DEBUG:
            # Without DEBUG, WhiteNoise serves only what collectstatic gathered.
            call_command("collectstatic", interactive=False, verbosity=0)
        # The children open their own connections; keep no SQLite handle open beside them.
        connections.close_all()

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        supervisor = Supervisor(
            demo_children(port=port),
            env=env,
            cwd=settings.BASE_DIR,
            out=self.stdout,
            stop_timeout=options["stop_timeout"],
        )
        url = f"http://127.0.0.1:{port}/"

        def announce() -> None:
            if supervisor.wait_until(lambda: _port_open(port), timeout=READY_TIMEOUT_SECONDS):
                supervisor.say("")
                supervisor.say(f"Tandem is running at {url}  (Ctrl-C stops it)")
                supervisor.say(seeded.getvalue().rstrip())
                supervisor.say("")

        outcome = supervisor.run(on_ready=announce)
        if outcome.ok:
            self.stdout.write(f"Stopped on {outcome.signal_name}; web server and worker are down.")
            return
        raise CommandError(
            f"{outcome.exited_child} exited with code {outcome.exit_code}; stopped the others",
            returncode=1 if outcome.exit_code in (0, None) else abs(outcome.exit_code),
        )
