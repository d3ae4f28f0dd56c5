"""A person's display time zone: chosen on the home page, kept in ``DisplayPreference`` and
in the session (so no page pays a query for it), and activated for each of their requests by
``UserTimeZoneMiddleware``: every time shown (the ``when`` filter) is in their zone, named."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import cache
from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from console.models import DisplayPreference
from core.errors import Refused

SESSION_KEY = "tandem_time_zone"


@cache
def time_zone_names() -> list[str]:
    """The IANA zone names a person may pick, sorted (UTC first)."""
    names = sorted(zoneinfo.available_timezones() - {"UTC", "localtime", "Factory"})
    return ["UTC", *names]


def time_zone_set(*, user: Any, name: str) -> DisplayPreference:
    """Show ``user``'s times in zone ``name`` ("" for the site's zone). Refuses an unknown
    name (INVALID), nothing changed. One transaction."""
    name = name.strip()
    if name and name not in time_zone_names():
        raise Refused(f"unknown time zone {name[:64]!r}", kind=Refused.Kind.INVALID)
    with transaction.atomic():
        preference, _ = DisplayPreference.objects.update_or_create(
            user=user, defaults={"time_zone": name}
        )
    return preference


def _chosen(user: Any) -> str:
    chosen = (
        DisplayPreference.objects.filter(user_id=int(user.pk or 0))
        .values_list("time_zone", flat=True)
        .first()
    )
    return chosen or ""


@receiver(user_logged_in)
def _remember_on_sign_in(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """Sign-in reads the preference once into the session: no page pays a query for it."""
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = _chosen(user)


def time_zone_of(request: HttpRequest) -> str:
    """The zone chosen by the signed-in person ("" for the site's), read from the session (or,
    for a session opened before sign-in remembered it, once from their preference)."""
    if SESSION_KEY not in request.session:
        request.session[SESSION_KEY] = _chosen(request.user)
    return str(request.session[SESSION_KEY])


class UserTimeZoneMiddleware:
    """Activates the signed-in person's display zone for the request (after authentication)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = time_zone_of(request) if request.user.is_authenticated else ""
        if name in time_zone_names():
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
