"""manage.py simulate --quotes N [--chaos PROFILE] [--seed S]: a quote-to-cash rehearsal;
``--scenario lifecycle --contracts N``: a rehearsal of the changes after the first order;
``--scenario month-end``: quote to cash, then known drift and a reconciliation that must find it."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.lifecycle_rehearsal import simulate_lifecycle
from demo.month_end import month_end
from demo.simulate import CHAOS_PROFILES, SimulationError, simulate


class Command(BaseCommand):
    help = (
        "Make the sandbox CPQ approve N quotes, wait until every order is live or in a "
        "visible exception, and print a JSON summary (exit 1 on any duplicate or lost quote)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The rehearsal's options (see ``demo.simulate.simulate``)."""
        parser.add_argument(
            "--scenario",
            choices=["quote-to-cash", "quote_to_cash", "lifecycle", "month-end"],
            default="quote-to-cash",
            help="lifecycle: changes after the first order; month-end: then make known drift in "
            "billing and the ERP and reconcile",
        )
        parser.add_argument("--quotes", type=int, default=20)
        parser.add_argument(
            "--contracts", type=int, default=20, help="lifecycle: how many contracts to change"
        )
        parser.add_argument("--chaos", choices=sorted(CHAOS_PROFILES), default="none")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--sandbox-url", default=None)
        parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait")
        parser.add_argument("--no-wait", action="store_true", help="approve and return")
        parser.add_argument(
            "--no-retry", action="store_true", help="leave exceptions open after chaos"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the rehearsal and print its summary as JSON; exit 1 unless it passed."""
        if options["quotes"] < 1 or options["contracts"] < 1:
            raise CommandError("--quotes and --contracts must be at least 1")
        stream = sys.stderr
        # SIGTERM unwinds like Ctrl-C, so the sandbox's faults are switched off on the way out.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

        def progress(done: int, total: int) -> None:
            width = 40
            filled = int(width * done / total) if total else width
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} settled")
            stream.flush()

        if options["scenario"] == "lifecycle":
            self._lifecycle(options, progress)
            return
        if options["scenario"] == "month-end":
            self._month_end(options, progress)
            return
        try:
            summary = simulate(
                quotes=options["quotes"],
                chaos=options["chaos"],
                seed=options["seed"],
                sandbox_url=options["sandbox_url"],
                timeout=options["timeout"],
                retry_exceptions=not options["no_retry"],
                wait=not options["no_wait"],
                progress=progress,
            )
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
        stream.write("\n")
        self.stdout.write(json.dumps(summary.as_dict(), indent=2, default=str))
        if not options["no_wait"] and not summary.ok:
            raise CommandError("rehearsal failed: duplicates, lost quotes or unsettled orders")

    def _lifecycle(self, options: dict[str, Any], progress: Any) -> None:
        try:
            summary = simulate_lifecycle(
                contracts=options["contracts"],
                chaos=options["chaos"],
                seed=options["seed"],
                sandbox_url=options["sandbox_url"],
                timeout=options["timeout"],
                retry_exceptions=not options["no_retry"],
                progress=progress,
            )
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
        sys.stderr.write("\n")
        self.stdout.write(json.dumps(summary.as_dict(), indent=2, default=str))
        if not summary.ok:
            raise CommandError(
                "rehearsal failed: a change duplicated, lost, applied out of order or unsettled"
            )

    def _month_end(self, options: dict[str, Any], progress: Any) -> None:
        """The month-end rehearsal; prints injected, found and ok; exit 1 unless they agree."""
        if options["chaos"] != "none" or options["no_wait"]:
            raise CommandError("the month-end scenario runs without --chaos and --no-wait")
        try:
            result = month_end(
                quotes=options["quotes"],
                seed=options["seed"],
                sandbox_url=options["sandbox_url"],
                timeout=options["timeout"],
                progress=progress,
            )
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
        sys.stderr.write("\n")
        self.stdout.write(json.dumps(result.as_dict(), indent=2, default=str))
        if not result.ok:
            raise CommandError(
                "month-end rehearsal failed: drift missed or found that was not made"
            )
