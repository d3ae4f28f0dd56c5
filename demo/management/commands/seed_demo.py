"""Create the demo users (one per role, plus admin) and load the demo dataset, once."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.env import envstr
from demo.seed import DEMO_DEFAULT_PASSWORD, DemoDataConflict, demo_seed, demo_user_table


class Command(BaseCommand):
    help = (
        "Create a demo user per role (password from DEMO_PASSWORD, default "
        f"'{DEMO_DEFAULT_PASSWORD}') and load the demo dataset unless it is already loaded. "
        "Runs only with DEBUG=1 or TANDEM_DEMO_MODE=1."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        """Refuse unless DEBUG or demo mode; seed; print the users (and seed near duplicates)."""
        if not (settings.DEBUG or settings.TANDEM_DEMO_MODE):
            raise CommandError(
                "seed_demo creates users with a known password; "
                "run it only with DEBUG=1 or TANDEM_DEMO_MODE=1"
            )
        password = envstr("DEMO_PASSWORD", DEMO_DEFAULT_PASSWORD)
        try:
            result = demo_seed(password=password)
        except DemoDataConflict as exc:
            raise CommandError(str(exc)) from exc
        if result.data_created:
            self.stdout.write(self.style.SUCCESS("Demo dataset loaded."))
        else:
            self.stdout.write("Demo dataset already present; nothing loaded.")
        self.stdout.write(demo_user_table(result.users, password=password))
        if result.data_created:
            self._near_duplicates()

    def _near_duplicates(self) -> None:
        """The same customers as other systems keyed them, and a first detection run."""
        from core.audit import Actor
        from demo.near_duplicates import demo_near_duplicates_seed
        from demo.seed import DEMO_ACTOR, DEMO_REASON
        from masterdata.services.duplicates import duplicates_detect

        demo_near_duplicates_seed(actor=Actor.system(DEMO_ACTOR), reason=DEMO_REASON)
        duplicates_detect(actor=Actor.system("scheduler"))
