"""Per-client rate limits: a fixed-window counter per (scope, client) in Django's cache.

``CACHE_URL`` puts the counters in Redis, shared by every process (the per-process memory
cache otherwise). A fixed window is one atomic ``incr`` per request: no read-modify-write race
between processes, and a constant-size entry whatever the rate (a sliding log of timestamps
grows with the rate). Its cost is that a client may send up to twice the rate across a window
boundary, which is fine for a flood guard. Each client has its own counter, so one client
answered 429 takes nothing from another.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.core.cache import cache

from core.env import rate_parse


def rate_limit_hit(*, scope: str, client: str, rate: str, now: float | None = None) -> int | None:
    """Count one request of ``client`` in ``scope`` against ``rate`` (``"600/min"``).

    Returns None while the client is within the rate, otherwise the seconds until its window
    ends (the ``Retry-After``).
    """
    limit, window = rate_parse(rate)
    now = time.time() if now is None else now
    window_index = int(now // window)
    # Hashed: a cache key must not carry an address or a username in clear.
    digest = hashlib.sha256(client.encode()).hexdigest()[:32]
    key = f"rate:{scope}:{digest}:{window_index}"
    if cache.add(key, 1, timeout=window + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: a new window
            cache.add(key, 1, timeout=window + 1)
            count = 1
    if count <= limit:
        return None
    return max(1, (window_index + 1) * window - int(now))


def client_address(request: Any) -> str:
    """The address a request came from, as the server saw it (``REMOTE_ADDR``); a proxy in
    front must set it from the forwarded header it trusts."""
    return str(request.META.get("REMOTE_ADDR") or "")
