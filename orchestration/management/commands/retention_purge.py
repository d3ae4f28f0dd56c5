"""``manage.py retention_purge [--dry-run]``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from core.audit import Actor
from orchestration.retention import retention_due, retention_purge


class Command(BaseCommand):
    help = (
        "Empty the stored bodies of inbound deliveries and outbound calls older than "
        "TANDEM_RETENTION_DAYS (metadata is kept) and record the purge. --dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.TANDEM_RETENTION_DAYS
        if options["dry_run"]:
            due = retention_due()
            self.stdout.write(
                f"would empty {due.inbound_bodies} inbound and {due.outbound_bodies} outbound "
                f"bodies older than {due.cutoff:%Y-%m-%d %H:%M} UTC ({days} days)"
            )
            return
        run = retention_purge(actor=Actor.system("scheduler"))
        self.stdout.write(
            f"emptied {run.inbound_bodies} inbound and {run.outbound_bodies} outbound bodies "
            f"older than {run.cutoff:%Y-%m-%d %H:%M} UTC ({days} days) in {run.batches} batches"
        )
