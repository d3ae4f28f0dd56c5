"""What the console page tests share: a clock the tests set, signed-in users, row parsing."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone


class Clock:
    """``django.utils.timezone.now`` as the test sets it (transitions, history and the
    views read it; model field defaults captured the real function and keep real time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = timezone.now()
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def set(self, when: dt.datetime) -> None:
        self.now = when

    def advance(self, **delta: float) -> dt.datetime:
        self.now = self.now + dt.timedelta(**delta)
        return self.now


def sign_in(client: Client, role: str, username: str = "olivia") -> Any:
    """A user with ``role`` ("admin" is a superuser), signed in on ``client``."""
    users = get_user_model().objects
    if role == "admin":
        user = users.create_superuser(username=username, password="pw", email="a@example.com")
    else:
        user = users.create_user(username=username, password="pw")
        user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


def listed(response: Any) -> list[str]:
    """The enterprise ids on the list page, in order."""
    return [record.enterprise_id for record, _stuck in response.context["rows"]]


def order_links(html: str) -> list[str]:
    return re.findall(r'<td><a href="/orders/(ORD-\d+)/">', html)
