"""Sign-in throttling: after ``LOGIN_FAILURE_LIMIT`` wrong passwords for one username (from
anywhere) or from one address (for any username) within ``LOGIN_LOCKOUT_SECONDS``, every
sign-in for it is refused, the right password included, until the window has passed.

It is an authentication backend, so the console's sign-in page, the admin's and the API's
session sign-in are all covered. Counters live in Django's cache (``CACHE_URL``: Redis in
production, shared by every process; the per-process memory cache otherwise).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def _key(kind: str, value: str) -> str:
    # Hashed: a cache key must not carry a username or an address in clear.
    return f"login-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def _keys(request: HttpRequest | None, username: str) -> list[str]:
    keys = [_key("user", username.strip().lower())]
    address = (request.META.get("REMOTE_ADDR") or "") if request is not None else ""
    if address:
        keys.append(_key("address", address))
    return keys


def login_locked(request: HttpRequest | None, username: str) -> bool:
    """Whether sign-in for ``username`` (or from the request's address) is locked now."""
    counts = cache.get_many(_keys(request, username))
    return any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts.values())


def login_failure_record(request: HttpRequest | None, username: str) -> None:
    for key in _keys(request, username):
        # add() starts the window once; incr() keeps its expiry (no sliding lockout).
        if not cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


class ThrottledModelBackend(ModelBackend):
    """Django's backend behind the lockout: a locked username or address is refused before
    the password is checked; a wrong password counts against both."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None,
        password: str | None = None, **kwargs: Any,
    ) -> Any:  # fmt: skip
        name = username if username is not None else kwargs.get("username") or ""
        if name and login_locked(request, name):
            raise PermissionDenied("too many failed sign-ins; try again later")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and name:
            login_failure_record(request, name)
        return user
