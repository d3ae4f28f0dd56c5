"""Typed readers for settings from the environment.

Each helper fails loudly (ImproperlyConfigured) on a value it cannot parse, so a typo in a
deployment stops the process at start-up instead of silently falling back to a default.
Secrets may also come from a file named by ``<NAME>_FILE`` (Docker and Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc}") from exc
    return os.environ.get(name)


def envstr(name: str, default: str | None = None, *, required: bool = False) -> str:
    """``name`` (or the file ``name_FILE`` names) as a string; ``default`` when unset or
    empty. Raises ``ImproperlyConfigured`` when it is required, or has no default, and unset."""
    value = _raw(name)
    if value is None or value == "":
        if required:
            raise ImproperlyConfigured(f"{name} must be set")
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set (no default)")
        return default
    return value


def envbool(name: str, default: bool) -> bool:
    """``name`` as a boolean (1/0, true/false, yes/no, on/off); ``default`` when unset.
    Raises ``ImproperlyConfigured`` for any other value."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    """``name`` as an integer; ``default`` when unset or empty. Raises
    ``ImproperlyConfigured`` for a value that is not an integer or is below ``minimum``."""
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        parsed = int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from exc
    if minimum is not None and parsed < minimum:
        raise ImproperlyConfigured(f"{name}={parsed} is below the minimum {minimum}")
    return parsed


def envfloat(name: str, default: float) -> float:
    """``name`` as a number; ``default`` when unset or empty. Raises ``ImproperlyConfigured``
    for a value that is not a number."""
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from exc


def envlist(name: str, default: list[str]) -> list[str]:
    """``name`` as a comma-separated list (items trimmed, empty ones dropped); a copy of
    ``default`` when unset."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


# A rate as "<requests>/<period>": 600/min, 20/s, 5000/hour, 100000/day.
RATE_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
                "h": 3600, "hour": 3600, "d": 86400, "day": 86400}  # fmt: skip


def rate_parse(text: str) -> tuple[int, int]:
    """``"600/min"`` -> ``(600, 60)``: requests allowed per window of seconds. ``ValueError``
    for anything else (a count below 1, an unknown period)."""
    count, _, period = text.strip().partition("/")
    if not count.isascii() or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{text!r}: expected <requests>/<period>, e.g. 600/min")
    if period not in RATE_PERIODS:
        raise ValueError(f"{text!r}: the period is one of {', '.join(RATE_PERIODS)}")
    return int(count), RATE_PERIODS[period]


def envrate(name: str, default: str) -> str:
    """``name`` as a rate (``rate_parse``), refused loudly when it is not one."""
    value = envstr(name, default)
    try:
        rate_parse(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from exc
    return value


def envminutes(name: str, defaults: dict[str, int], *, keys: list[str]) -> dict[str, int]:
    """``defaults`` (key -> minutes) overridden by ``NAME=key=minutes,key=minutes``.

    An unknown key or a value that is not a positive whole number of minutes is refused.
    """
    result = dict(defaults)
    value = _raw(name)
    if not value:
        return result
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, minutes = item.partition("=")
        key = key.strip()
        if not sep or key not in keys:
            raise ImproperlyConfigured(
                f"{name}: {item.strip()!r} is not key=minutes with a key among {', '.join(keys)}"
            )
        try:
            parsed = int(minutes)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {minutes!r} is not whole minutes") from exc
        if parsed < 1:
            raise ImproperlyConfigured(f"{name}: {key} must be at least 1 minute")
        result[key] = parsed
    return result
