"""One request budget per system, shared by every worker that calls it.

``rate_limit_acquire(system, rate_per_second)`` blocks, sleeping, until the caller may send
one request to ``system``. Requests are spaced evenly, ``1 / rate`` seconds apart, with no
burst: each caller reserves the next free slot and sleeps until it comes, so waiting callers
are served in the order they asked and nobody polls.

Where the budget lives follows the broker:

- ``CELERY_BROKER_URL`` is ``redis://`` (production): the next free slot per system is one
  Redis key, moved by a Lua script that reads Redis's own clock, so every worker on every
  host shares one budget and the hosts' clocks do not matter.
- anything else (the single-host demo on the filesystem broker): an in-process limiter.
  Each worker process then has its own budget, so N worker processes may together send up
  to N times the rate; that is accepted for a demo on one machine and never used in
  production.

A rate of zero or less means "no limit". If Redis cannot be reached the call is not sent:
``RetryableError`` (kind ``rate_limiter_unavailable``) lets the workflow retry it later.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis
from django.conf import settings

from orchestration.connectors.errors import RetryableError

KEY_PREFIX = "tandem:ratelimit:"
MICROSECONDS = 1_000_000

# KEYS[1]: the system's next free slot (microseconds on Redis's clock); ARGV[1]: the spacing
# in microseconds. Reserves a slot and answers how long the caller must wait for it.
_RESERVE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local spacing = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then
    slot = now
end
local expires_ms = math.ceil((slot + spacing - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', slot + spacing), 'PX', expires_ms)
return slot - now
"""


class RateLimiter(Protocol):
    def acquire(self, system: str, rate_per_second: float) -> float:
        """Block until one request to ``system`` may go; return the seconds waited."""
        ...


class LocalRateLimiter:
    """The budget of one process (threads share it; other processes do not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}

    def acquire(self, system: str, rate_per_second: float) -> float:
        """Take ``system``'s next slot in this process, sleeping until it comes; seconds slept."""
        if rate_per_second <= 0:
            return 0.0
        spacing = 1.0 / rate_per_second
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot.get(system, now))
            self._next_slot[system] = slot + spacing
        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return wait


class RedisRateLimiter:
    """The budget of every process that talks to the same Redis database."""

    def __init__(self, url: str, *, key_prefix: str = KEY_PREFIX) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self._client.register_script(_RESERVE_SCRIPT)
        self._key_prefix = key_prefix

    def acquire(self, system: str, rate_per_second: float) -> float:
        """Reserve the next slot of ``system`` across processes, sleeping until it comes; the
        seconds slept. Redis unavailable is a ``RetryableError`` (no call is made).
        """
        if rate_per_second <= 0:
            return 0.0
        spacing_us = max(1, round(MICROSECONDS / rate_per_second))
        try:
            wait_us = int(self._reserve(keys=[self._key_prefix + system], args=[spacing_us]))
        except redis.RedisError as exc:
            raise RetryableError(
                f"the shared rate limiter is unavailable ({type(exc).__name__})",
                system=system,
                kind="rate_limiter_unavailable",
            ) from exc
        wait = wait_us / MICROSECONDS
        if wait > 0:
            time.sleep(wait)
        return wait


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter() -> RateLimiter:
    """The limiter for this process, chosen by ``settings.CELERY_BROKER_URL``."""
    url = str(settings.CELERY_BROKER_URL)
    with _limiters_lock:
        limiter = _limiters.get(url)
        if limiter is None:
            if url.startswith(("redis://", "rediss://")):
                limiter = RedisRateLimiter(url)
            else:
                limiter = LocalRateLimiter()
            _limiters[url] = limiter
        return limiter


def rate_limit_acquire(system: str, rate_per_second: float) -> float:
    """Block until one request to ``system`` may go; return the seconds waited."""
    return rate_limiter().acquire(system, rate_per_second)
