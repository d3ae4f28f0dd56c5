"""Tryton's JSON-RPC values and errors, without any I/O.

Tryton sends Decimal, dates and datetimes as ``{"__class__": …}`` objects (its
``JSONEncoder``); ``rpc_encode`` and ``rpc_decode`` translate them. Tryton answers business
errors with HTTP 200 and ``{"error": [name, args]}``: ``rpc_error`` classes such an answer
for the transport (``body_error``): a ``UserError`` or ``UserWarning`` is permanent, with
Tryton's message; a concurrent write is retryable; any other server exception is a server
error, retryable like an HTTP 500.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from decimal import Decimal
from typing import Any

from orchestration.models import OutboundOutcome

TRYTON_ERRORS = {"UserError", "ConcurrencyException", "LoginException", "RateLimitException"}
RETRYABLE_RPC_ERRORS = {"ConcurrencyException", "RateLimitException"}
# UserErrors that mean a concurrent write won, not that the request is wrong.
RACE_MESSAGES = re.compile(r"must be unique\.?$|^You can not call \"")
# How ``rpc_error`` writes a UserWarning's name into its message (to acknowledge it).
WARNING_NAME = re.compile(r"\[warning: (?P<name>[^\]]+)\]$")


def rpc_encode(value: Any) -> Any:
    """Tryton's JSON for Decimal and dates (its ``JSONEncoder``); anything else unchanged."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": format(value, "f")}
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {key: rpc_encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rpc_encode(item) for item in value]
    return value


def rpc_decode(value: Any) -> Any:
    """The inverse of ``rpc_encode`` for what Tryton answers (datetimes are naive UTC)."""
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return dt.datetime(
                value["year"],
                value["month"],
                value["day"],
                value.get("hour", 0),
                value.get("minute", 0),
                value.get("second", 0),
                value.get("microsecond", 0),
                tzinfo=dt.UTC,
            )
        if kind == "bytes":
            return base64.b64decode(value.get("base64", ""))
        return {key: rpc_decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rpc_decode(item) for item in value]
    return value


def rpc_error(body: Any) -> tuple[str, str, str] | None:
    """Class an HTTP 200 JSON-RPC answer that carries an error: (outcome, class, message).

    Tryton's own exceptions come as ``[name, args]``: ``UserError`` (args: message,
    description, domain) and ``UserWarning`` (args: warning name, message, description) are
    permanent, ``ConcurrencyException`` is retryable. Any other server exception comes as
    ``[str(exception), traceback]``: a server error, retryable like an HTTP 500, and only its
    first line is kept (never the traceback).
    """
    if not isinstance(body, dict) or body.get("error") is None:
        return None
    error = body["error"]
    if not isinstance(error, list) or not error:
        return OutboundOutcome.RETRYABLE, "server_error", str(error)[:200]
    name = str(error[0])
    args = error[1] if len(error) > 1 and isinstance(error[1], list) else []
    texts = [str(part) for part in args if isinstance(part, str) and part]
    if name == "UserWarning":
        # the warning's name is what ``res.user.warning.skip`` takes to acknowledge it
        warning, message = (texts[0], " — ".join(texts[1:3])) if texts else ("", name)
        return (
            OutboundOutcome.PERMANENT,
            "user_warning",
            f"{message[:400]} [warning: {warning[:90]}]",
        )
    if name == "UserError" and texts and RACE_MESSAGES.search(texts[0]):
        # Lost to a concurrent writer (two workers numbering or creating at once, a retry
        # racing the attempt whose answer timed out): the step's retry looks the record up
        # again and finds how things stand.
        return OutboundOutcome.RETRYABLE, "conflict", " — ".join(texts[:2])[:500]
    if name in TRYTON_ERRORS:
        outcome = (
            OutboundOutcome.RETRYABLE if name in RETRYABLE_RPC_ERRORS else OutboundOutcome.PERMANENT
        )
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()  # UserError -> user_error
        return outcome, kind, (" — ".join(texts[:2]) or name)[:500]
    return (
        OutboundOutcome.RETRYABLE,
        "server_error",
        name.partition("\n")[0][:200] or "server error",
    )
