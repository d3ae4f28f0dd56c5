"""``manage.py match_records``: score a CSV file with the duplicate-detection pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from masterdata.matching.files import (
    FileRefused,
    add_accounts,
    mapping_parse,
    match_records,
    pairs_write,
    read_file,
)
from masterdata.selectors import account_records


class Command(BaseCommand):
    help = (
        "Find the rows of a CSV file that are one organisation (or, with --against-accounts, "
        "the accounts they already are); writes id_a,id_b,score,cluster and prints a JSON "
        "summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the CSV file (UTF-8, a header row)")
        parser.add_argument(
            "--map", required=True, dest="mapping",
            help="FIELD=COLUMN,... with FIELD among legal_name (required), address_line1, "
            "address_line2, city, postcode, phone, tax_id, domain, email, country",
        )  # fmt: skip
        parser.add_argument("--id", required=True, dest="id_column", help="the id column")
        parser.add_argument("--country", default="", help="country of rows that give none")
        parser.add_argument(
            "--against-accounts", action="store_true",
            help="pair rows with Tandem's active accounts instead of with each other",
        )  # fmt: skip
        parser.add_argument("--out", required=True, help="where to write the pairs (CSV)")
        parser.add_argument(
            "--threshold", type=float, default=None,
            help="minimum match probability (default: TANDEM_DUPLICATE_THRESHOLD)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        threshold = options["threshold"]
        if threshold is None:
            threshold = settings.TANDEM_DUPLICATE_THRESHOLD
        if not 0 < threshold < 1:
            raise CommandError("--threshold must be between 0 and 1")
        source = Path(options["file"])
        if not source.is_file():
            raise CommandError(f"no such file: {source}")
        try:
            mapping = mapping_parse(options["mapping"])
            file = read_file(
                source.read_bytes(), mapping=mapping, id_column=options["id_column"],
                country=options["country"],
            )  # fmt: skip
        except FileRefused as exc:
            raise CommandError(str(exc)) from exc
        if options["against_accounts"]:
            add_accounts(file, account_records())
        found = match_records(
            file, threshold=threshold, against_accounts=options["against_accounts"]
        )
        out = Path(options["out"])
        try:
            with out.open("w", newline="", encoding="utf-8") as handle:
                pairs_write(found.pairs, handle)
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}") from exc
        summary = {"file": str(source), "out": str(out), **found.summary}
        self.stdout.write(json.dumps(summary, indent=2))
