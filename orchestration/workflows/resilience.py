"""Backoff with jitter and the per-system circuit breaker.

The breaker's state is a row per system, changed under a short row lock (never around an
HTTP call): ``circuit_allow`` before a call, ``circuit_record`` after it.

A process remembers for ``CIRCUIT_CLEAN_CACHE_SECONDS`` (1 s) that a system's breaker was
closed with no failure counted, so the hot path of an external step (allowed, then a success)
reads no row at all. A failure this process records forgets it at once; a breaker another
process opens is seen here within that time, the price of not reading the row twice a step.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestration.workflows.models import CircuitBreaker, CircuitState

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0


def backoff_delay(
    *, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds before attempt ``attempt + 1``: capped exponential with full jitter.

    A server's Retry-After is a floor: we never come back sooner than it asked.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** (attempt - 1)))
    delay = (rng or random).uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP_SECONDS))
    return delay


def _threshold() -> int:
    return int(getattr(settings, "CIRCUIT_FAILURE_THRESHOLD", 5))


def _open_seconds() -> float:
    return float(getattr(settings, "CIRCUIT_OPEN_SECONDS", 30))


def _trial_seconds() -> float:
    """How long a half-open breaker waits for its trial call's outcome before it lets another
    caller try: a step lease (the trial's worker renews nothing here, but a live step reports
    its outcome within one unless the system is that slow, and then a second trial is harmless)."""
    return float(getattr(settings, "STEP_LEASE_SECONDS", 15))


def _clean_cache_seconds() -> float:
    return float(getattr(settings, "CIRCUIT_CLEAN_CACHE_SECONDS", 1.0))


# system -> time.monotonic() until which its breaker is known closed with no failure counted
_known_clean: dict[str, float] = {}
_known_clean_lock = threading.Lock()


def circuit_cache_clear() -> None:
    """Forget what this process remembers of the breakers (the next check reads the rows)."""
    with _known_clean_lock:
        _known_clean.clear()


def _forget(system: str) -> None:
    with _known_clean_lock:
        _known_clean.pop(system, None)


def _closed_and_clean(system: str) -> bool:
    if _known_clean.get(system, 0.0) > time.monotonic():
        return True
    clean = CircuitBreaker.objects.filter(
        system=system, state=CircuitState.CLOSED, consecutive_failures=0
    ).exists()
    ttl = _clean_cache_seconds()
    with _known_clean_lock:
        if clean and ttl > 0:
            _known_clean[system] = time.monotonic() + ttl
        else:
            _known_clean.pop(system, None)
    return clean


def circuit_allow(*, system: str, now: dt.datetime | None = None) -> float | None:
    """None if a call to ``system`` may go ahead, else the seconds until it may.

    A closed breaker (the usual case) is read without a lock or a transaction: only a breaker
    that is open or half-open needs the row lock that lets exactly one caller make the trial.
    """
    now = now or timezone.now()
    if _closed_and_clean(system):
        return None
    with transaction.atomic():
        CircuitBreaker.objects.get_or_create(system=system)
        breaker = CircuitBreaker.objects.select_for_update().get(system=system)
        if breaker.state == CircuitState.CLOSED:
            return None
        overdue = breaker.open_until is None or breaker.open_until <= now
        if breaker.state in (CircuitState.OPEN, CircuitState.HALF_OPEN) and overdue:
            # Open and its wait is over, or half-open with a trial whose caller never reported
            # within a step lease (its worker was killed, or its step ended without a call
            # outcome): this caller makes the one trial call, and has a step lease to report.
            breaker.state = CircuitState.HALF_OPEN
            breaker.open_until = now + dt.timedelta(seconds=_trial_seconds())
            breaker.save(update_fields=["state", "open_until", "updated_at"])
            return None
        if breaker.open_until and breaker.open_until > now:
            return (breaker.open_until - now).total_seconds()
        return _open_seconds()


def circuit_record(
    *, system: str, ok: bool, error: str = "", now: dt.datetime | None = None
) -> str:
    """Count a call's outcome; returns the breaker state after it.

    A success on a closed breaker with no failures counted changes nothing, so it writes
    nothing (no lock, no commit): the hot path of every successful external step.
    """
    now = now or timezone.now()
    if ok and _closed_and_clean(system):
        return CircuitState.CLOSED
    _forget(system)
    with transaction.atomic():
        CircuitBreaker.objects.get_or_create(system=system)
        breaker = CircuitBreaker.objects.select_for_update().get(system=system)
        if ok:
            breaker.state = CircuitState.CLOSED
            breaker.consecutive_failures = 0
            breaker.open_until = None
        else:
            breaker.consecutive_failures += 1
            breaker.last_failure = error[:500]
            if (
                breaker.state == CircuitState.HALF_OPEN
                or breaker.consecutive_failures >= _threshold()
            ):
                breaker.state = CircuitState.OPEN
                breaker.opened_at = now
                breaker.open_until = now + dt.timedelta(seconds=_open_seconds())
        breaker.save()
    _forget(system)  # a thread that read the row before this write must not be believed
    return breaker.state
