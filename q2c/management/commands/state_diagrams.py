"""Print docs/state-machines.md from the models' transitions, or check it is up to date."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from q2c.state_diagrams import DOC_PATH, state_diagrams_markdown


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # reads model metadata only
    help = (
        "Print the mermaid state diagrams of every state machine as markdown; "
        f"--check fails if {DOC_PATH} is stale, --write rewrites it."
    )

    def add_arguments(self, parser: Any) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--check", action="store_true", help=f"exit 1 if {DOC_PATH} is stale")
        mode.add_argument("--write", action="store_true", help=f"rewrite {DOC_PATH}")

    def handle(self, *args: Any, **options: Any) -> None:
        generated = state_diagrams_markdown()
        path = settings.BASE_DIR / DOC_PATH
        if options["check"]:
            committed = path.read_text(encoding="utf-8") if path.exists() else ""
            if committed != generated:
                raise CommandError(
                    f"{DOC_PATH} is stale; run: python manage.py state_diagrams --write",
                    returncode=1,
                )
            self.stdout.write(f"{DOC_PATH} is up to date.")
            return
        if options["write"]:
            path.write_text(generated, encoding="utf-8")
            self.stdout.write(f"wrote {DOC_PATH}")
            return
        self.stdout.write(generated, ending="")
