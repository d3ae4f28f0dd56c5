"""Stripe conventions shared by the simulated billing and payments systems."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sandbox.errors import STRIPE, ApiError
from sandbox.systems.base import Fields, System

ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)


def minor_to_decimal(amount: int, currency: str) -> str:
    """Stripe's integer minor units as a decimal string: 123456 usd -> ``"1234.56"``."""
    if currency.upper() in ZERO_DECIMAL_CURRENCIES:
        return str(amount)
    return str((Decimal(amount) / 100).quantize(Decimal("0.01")))


def unix_date(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


class StripeSystem(System):
    style = STRIPE

    def missing(self, name: str) -> ApiError:
        return ApiError(400, "parameter_missing", f"Missing required param: {name}.", field=name)

    def invalid(self, name: str, message: str) -> ApiError:
        return ApiError(400, "parameter_invalid", message, field=name)

    def unknown_field(self, name: str) -> ApiError:
        return ApiError(400, "parameter_unknown", f"Received unknown parameter: {name}", field=name)

    def not_found(self, kind: str, identifier: str) -> ApiError:
        return ApiError(404, "resource_missing", f"No such {kind}: '{identifier}'", field="id")

    def lookup(self, records: dict[str, Any], kind: str, identifier: Any, field: str = "id"):
        record = records.get(identifier) if isinstance(identifier, str) else None
        if record is None:
            error = self.not_found(kind, str(identifier))
            error.field = field
            raise error
        return record

    def metadata(self, fields: Fields, current: dict[str, str] | None = None) -> dict[str, str]:
        """Stripe's metadata rules; on update, keys merge and an empty value deletes a key."""
        result = dict(current or {})
        raw = fields.mapping("metadata")
        if raw is None:
            return result
        for key, value in raw.items():
            if len(key) > 40:
                raise self.invalid(f"metadata[{key}]", "Metadata keys are limited to 40 characters")
            if value in ("", None):
                result.pop(key, None)
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
                raise self.invalid(f"metadata[{key}]", "Metadata values must be strings")
            if len(str(value)) > 500:
                raise self.invalid(
                    f"metadata[{key}]", "Metadata values are limited to 500 characters"
                )
            result[key] = str(value)
        if len(result) > 50:
            raise self.invalid("metadata", "Metadata is limited to 50 keys")
        return result


def list_object(url: str, records: list[dict[str, Any]], limit: int | None = None):
    """Stripe's list envelope, newest first like the real API."""
    ordered = list(reversed(records))
    shown = ordered[: limit or 100]
    return {"object": "list", "url": url, "has_more": len(ordered) > len(shown), "data": shown}


def metadata_matches(record: dict[str, Any], wanted: dict[str, str]) -> bool:
    return all(record.get("metadata", {}).get(key) == value for key, value in wanted.items())
