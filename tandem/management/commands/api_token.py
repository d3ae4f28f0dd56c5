"""Issue (or rotate) the API token of a user and print it: the only time it is shown."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import Refused
from core.tokens import api_token_issue


class Command(BaseCommand):
    help = (
        "Issue a user's API token and print it once (only its digest is stored); "
        "--rotate revokes the current token and issues a new one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--rotate", action="store_true", help="revoke the current token and issue a new one"
        )

    def handle(self, *args: Any, username: str, rotate: bool, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        try:
            key = api_token_issue(user=user, rotate=rotate)
        except Refused as refused:
            raise CommandError(refused.message) from None
        self.stdout.write(key)
