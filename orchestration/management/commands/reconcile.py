"""``manage.py reconcile [--system billing|erp|all] [--since DATE] [--json]``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from core.audit import Actor
from core.errors import Refused
from orchestration.reconciliation.models import ReconciledSystem, RunState
from orchestration.reconciliation.selectors import runs_report
from orchestration.reconciliation.services import reconciliation_run


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since {value!r} is not a date (YYYY-MM-DD) or a timestamp")
        moment = dt.datetime.combine(day, dt.time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.UTC)


class Command(BaseCommand):
    help = (
        "Compare Tandem with billing and/or the ERP now: in full, or only what changed since "
        "--since. Prints each run and the drift found (--json: runs and found as JSON)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--system", choices=[*ReconciledSystem.values, "all"], default="all")
        parser.add_argument("--since", help="only what changed since this date or timestamp")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _since(options["since"])
        systems = ReconciledSystem.values if options["system"] == "all" else [options["system"]]
        actor = Actor.system("scheduler")
        runs = []
        for system in systems:
            try:
                runs.append(reconciliation_run(system=system, actor=actor, since=since))
            except Refused as exc:
                raise CommandError(str(exc)) from exc
        report = runs_report(runs)
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for run in report["runs"]:
                self.stdout.write(
                    f"REC-{run['id']} {run['system']} {run['state']}: read {run['tandem_rows']} "
                    f"Tandem and {run['remote_rows']} {run['system']} records, found "
                    f"{run['found']} drift ({run['opened']} new, {run['closed']} closed)"
                    + (f" — {run['error']}" if run["error"] else "")
                )
            for item in report["found"]:
                self.stdout.write(f"  {item['type']:<22} {item['system']:<8} {item['record']}")
        if any(run.state == RunState.FAILED for run in runs):
            raise CommandError("a reconciliation run failed")
