"""Structured logs that carry the correlation id (the enterprise id of the deal).

``correlation(...)`` sets the id for a block of work in the web process, the worker and the
connectors alike, so one deal can be followed across all three with a single grep.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

_correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "tandem_correlation_id", default="-"
)


@contextlib.contextmanager
def correlation(correlation_id: str) -> Iterator[None]:
    """Tag every log line written in this block with ``correlation_id`` (the deal's
    enterprise id; "-" when empty)."""
    token = _correlation_id.set(correlation_id or "-")
    try:
        yield
    finally:
        _correlation_id.reset(token)


def current_correlation_id() -> str:
    """The correlation id of the block being run ("-" outside any)."""
    return _correlation_id.get()


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = _correlation_id.get()
        return True


_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", _correlation_id.get()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
