"""``manage.py sandbox``: serve the simulated CPQ, CRM, billing, ERP, tax and payments."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.env import envfloat, envint, envstr
from sandbox import SYSTEMS, Sandbox, SandboxConfig, SandboxServer
from sandbox.config import ConfigError, default_api_key, default_webhook_secret


def _per_system(values: list[str], option: str) -> dict[str, str]:
    """``["secret"]`` sets every system; ``["erp=secret", ...]`` sets the ones named."""
    chosen: dict[str, str] = {}
    for value in values:
        system, sep, secret = value.partition("=")
        if sep and system in SYSTEMS:
            chosen[system] = secret
        elif sep and system.isidentifier() and system.islower():
            raise CommandError(f"{option}: unknown system {system!r} (known: {', '.join(SYSTEMS)})")
        else:
            chosen.update({name: value for name in SYSTEMS})
    return chosen


class Command(BaseCommand):
    help = (
        "Serve the sandbox of every system (/crm/, /cpq/, /billing/, /erp/, /tax/, /payments/ "
        "and /_control/) over HTTP until interrupted."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=envstr("SANDBOX_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=envint("SANDBOX_PORT", 8100, minimum=0))
        parser.add_argument(
            "--seed",
            type=int,
            default=envint("SANDBOX_SEED", 1),
            help="seed of the fault and id generators; the same seed replays the same run",
        )
        parser.add_argument(
            "--state-file",
            default=envstr("SANDBOX_STATE_FILE", ""),
            help="JSON file that keeps the sandbox's state across restarts",
        )
        parser.add_argument(
            "--webhook-url",
            default=envstr("SANDBOX_WEBHOOK_URL", "http://127.0.0.1:8000/webhooks/"),
            help="Tandem's webhook base URL; events go to <url><system>/ ('' keeps them)",
        )
        parser.add_argument(
            "--webhook-secret",
            action="append",
            default=[],
            metavar="[SYSTEM=]SECRET",
            help="signing secret (default: WEBHOOK_SECRET_<SYSTEM>, else a demo secret)",
        )
        parser.add_argument(
            "--api-key",
            action="append",
            default=[],
            metavar="[SYSTEM=]KEY",
            help="bearer key a client must send (default: CONNECTOR_<SYSTEM>_API_KEY, "
            "else a demo key)",
        )
        parser.add_argument(
            "--erp-approval-delay",
            type=float,
            default=envfloat("SANDBOX_ERP_APPROVAL_DELAY", 2.0),
            help="seconds before the ERP approves a sales order; negative: only by hand",
        )
        parser.add_argument(
            "--faults",
            default=envstr("SANDBOX_FAULTS", ""),
            help='initial faults as JSON, e.g. \'{"erp": {"latency_ms": 200}}\'',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        api_keys = {
            system: envstr(f"CONNECTOR_{system.upper()}_API_KEY", default_api_key(system))
            for system in SYSTEMS
        }
        api_keys.update(_per_system(options["api_key"], "--api-key"))
        secrets = {
            system: envstr(f"WEBHOOK_SECRET_{system.upper()}", default_webhook_secret(system))
            for system in SYSTEMS
        }
        secrets.update(_per_system(options["webhook_secret"], "--webhook-secret"))
        delay = options["erp_approval_delay"]
        try:
            config = SandboxConfig(
                seed=options["seed"],
                api_keys=api_keys,
                webhook_secrets=secrets,
                control_token=settings.SANDBOX_CONTROL_TOKEN,
                webhook_url=options["webhook_url"] or None,
                erp_approval_delay_s=None if delay < 0 else delay,
                state_file=Path(options["state_file"]) if options["state_file"] else None,
            )
            sandbox = Sandbox(config)
            if options["faults"]:
                initial = json.loads(options["faults"])
                if not isinstance(initial, dict):
                    raise ConfigError("--faults must be a JSON object keyed by system")
                for system, changes in initial.items():
                    if system not in SYSTEMS:
                        raise ConfigError(f"--faults: unknown system {system!r}")
                    sandbox.faults[system] = sandbox.faults[system].updated(changes)
        except (ConfigError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        server = SandboxServer(sandbox, host=options["host"], port=options["port"])

        def _stop(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)
        self.stdout.write(
            f"Sandbox listening on {server.url} (seed {config.seed}, webhooks to "
            f"{config.webhook_url or 'nowhere'}, state "
            f"{config.state_file or 'in memory'})"
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            self.stdout.write(
                "Sandbox stopped; state saved." if config.state_file else "Sandbox stopped."
            )
