"""The API's throttle, its own module: DRF reads ``DEFAULT_THROTTLE_CLASSES`` when the first
view class is defined, so it must not live in a module that defines views (``core.api``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.ratelimit import client_address, rate_limit_hit


class ClientRateThrottle(BaseThrottle):
    """Per-client rate limit on the API (``core.ratelimit``): per user once authenticated (a
    token belongs to one user), per address before; ``API_THROTTLE_USER`` and
    ``API_THROTTLE_ANON``. Past it, DRF answers 429 with ``Retry-After``."""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is not None and user.is_authenticated:
            scope, client, rate = "api-user", str(user.pk), settings.API_THROTTLE_USER
        else:
            scope, client, rate = "api-anon", client_address(request), settings.API_THROTTLE_ANON
        self.retry_after = rate_limit_hit(scope=scope, client=client, rate=rate)
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after
