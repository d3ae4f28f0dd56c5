"""Run the whole demo on one machine: migrate, seed, then the web server, a Celery worker and
the sandbox of every system.

The children share this process's environment (so the same SQLite file and filesystem
broker) plus the sandbox's demo credentials, so Tandem's connectors and webhook endpoint and
the sandbox agree on keys and signing secrets. Their output is forwarded with a name prefix,
and Ctrl-C or SIGTERM stops them all and exits 0. A worker that dies is started again (see
``tandem.supervisor``); if another child dies, the others are stopped and the command exits
non-zero.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from io import StringIO
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.env import envint
from sandbox.config import SYSTEMS, default_api_key, default_webhook_secret
from tandem.supervisor import ChildSpec, Supervisor

READY_TIMEOUT_SECONDS = 60


def demo_children(*, port: int, sandbox_port: int) -> list[ChildSpec]:
    """The processes the demo runs; add one here to run it beside the others."""
    manage = str(settings.BASE_DIR / "manage.py")
    web = [sys.executable, manage, "runserver", f"127.0.0.1:{port}", "--noreload"]
    worker = [
        sys.executable, "-m", "celery", "-A", "tandem", "worker", "-B",
        "-Q", ",".join(settings.TANDEM_QUEUES), "--pool", "threads", "-c", "4",
        "--loglevel", "INFO",
    ]  # fmt: skip
    sandbox = [
        sys.executable, manage, "sandbox", "--port", str(sandbox_port),
        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/", "--seed", "1",
        # Kept across restarts, so the systems' ids never repeat ones Tandem already holds.
        "--state-file", str(settings.VAR_DIR / "sandbox-state.json"),
    ]  # fmt: skip
    # A worker that crashes (killed, out of memory) is started again; the steps it was running
    # are run again by the sweeper once their lease lapses.
    return [
        ChildSpec("web", web),
        ChildSpec("worker", worker, restart=True),
        ChildSpec("sandbox", sandbox),
    ]


def demo_environment(base: Mapping[str, str], *, sandbox_port: int) -> dict[str, str]:
    """``base`` plus the sandbox's demo credentials and URL, wherever ``base`` sets none.

    A variable counts as set when it or its ``<NAME>_FILE`` is present, so real secrets
    given to the demo are never replaced by the demo ones.
    """
    defaults = {"CONNECTOR_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}"}
    for system in SYSTEMS:
        defaults[f"WEBHOOK_SECRET_{system.upper()}"] = default_webhook_secret(system)
        defaults[f"CONNECTOR_{system.upper()}_API_KEY"] = default_api_key(system)
    env = dict(base)
    for name, value in defaults.items():
        if name not in env and f"{name}_FILE" not in env:
            env[name] = value
    return env


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = (
        "Migrate, seed the demo users and data, then serve the console on "
        "http://127.0.0.1:$DEMO_PORT (default 8000) with a Celery worker and beat, and the "
        "sandbox of every system on $DEMO_SANDBOX_PORT (default 8100). Ctrl-C stops everything."
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
        sandbox_port = envint("DEMO_SANDBOX_PORT", 8100, minimum=1)
        if sandbox_port == port:
            raise CommandError("DEMO_PORT and DEMO_SANDBOX_PORT must differ")
        for name, number in (("DEMO_PORT", port), ("DEMO_SANDBOX_PORT", sandbox_port)):
            if _port_open(number):
                raise CommandError(f"port {number} on 127.0.0.1 is in use; set {name} to another")
        call_command("migrate", interactive=False, verbosity=1, stdout=self.stdout)
        seeded = StringIO()
        call_command("seed_demo", stdout=seeded)
        if not settings.DEBUG:
            # Without DEBUG, WhiteNoise serves only what collectstatic gathered.
            call_command("collectstatic", interactive=False, verbosity=0)
        # The children open their own connections; keep no SQLite handle open beside them.
        connections.close_all()

        env = demo_environment({**os.environ, "PYTHONUNBUFFERED": "1"}, sandbox_port=sandbox_port)
        supervisor = Supervisor(
            demo_children(port=port, sandbox_port=sandbox_port),
            env=env,
            cwd=settings.BASE_DIR,
            out=self.stdout,
            stop_timeout=options["stop_timeout"],
        )
        url = f"http://127.0.0.1:{port}/"

        def announce() -> None:
            if supervisor.wait_until(
                lambda: _port_open(port) and _port_open(sandbox_port),
                timeout=READY_TIMEOUT_SECONDS,
            ):
                supervisor.say("")
                supervisor.say(f"Tandem is running at {url}  (Ctrl-C stops it)")
                supervisor.say(
                    f"The sandbox of every system is at http://127.0.0.1:{sandbox_port}/ "
                    f"(faults: /_control/faults/<system>)"
                )
                supervisor.say(seeded.getvalue().rstrip())
                supervisor.say("")

        outcome = supervisor.run(on_ready=announce)
        if outcome.ok:
            self.stdout.write(
                f"Stopped on {outcome.signal_name}; web server, worker and sandbox are down."
            )
            return
        raise CommandError(
            f"{outcome.exited_child} exited with code {outcome.exit_code}; stopped the others",
            returncode=1 if outcome.exit_code in (0, None) else abs(outcome.exit_code),
        )
