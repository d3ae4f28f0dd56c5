"""``manage.py detect_duplicates``: score the active accounts and store candidate pairs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from core.audit import Actor
from masterdata.services.duplicates import duplicates_detect


class Command(BaseCommand):
    help = "Find duplicate-account candidates (the same job the beat schedule runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threshold", type=float, default=None,
            help="minimum score (default: TANDEM_DUPLICATE_THRESHOLD)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        summary = duplicates_detect(actor=Actor.system("scheduler"), threshold=options["threshold"])
        self.stdout.write(
            f"{summary.accounts} accounts, {summary.comparisons} comparisons, "
            f"{summary.pairs_scored} pairs scored, {summary.found} candidates "
            f"({summary.created} new, {summary.reopened} reopened, {summary.updated} updated) "
            f"in {summary.seconds} s"
        )
