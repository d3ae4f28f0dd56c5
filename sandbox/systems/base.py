"""What every simulated system shares: routes, the per-request call context, validation."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandbox.errors import ApiError, generic_error
from sandbox.ids import salesforce_id, stripe_id

if TYPE_CHECKING:
    from sandbox.state import SandboxState

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_METADATA_QUERY = re.compile(r"^metadata\[(?P<key>[^\]]+)\]$")
CENT = Decimal("0.01")


@dataclass
class Reply:
    """What a handler answers; ``body`` None means no content."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Event:
    system: str
    event_type: str
    data: dict[str, Any]
    correlation_id: str | None = None


@dataclass
class Call:
    """One request to one system, with access to the state under the sandbox lock."""

    system: str
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: dict[str, Any]
    state: SandboxState
    seed: int
    now: dt.datetime
    settings: dict[str, Any]
    events: list[Event] = field(default_factory=list)

    def collection(self, name: str, system: str | None = None) -> dict[str, Any]:
        return self.state.systems[system or self.system][name]

    def emit(self, event_type: str, data: dict[str, Any], *, correlation_id: str | None = None):
        self.events.append(Event(self.system, event_type, data, correlation_id))

    def number(self, name: str) -> int:
        return self.state.next_number(f"{self.system}.{name}")

    def salesforce_id(self, key_prefix: str) -> str:
        return salesforce_id(key_prefix, self.number(key_prefix), seed=str(self.seed))

    def stripe_id(self, prefix: str, width: int = 14) -> str:
        return stripe_id(prefix, self.number(prefix), seed=str(self.seed), width=width)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def metadata_filter(self) -> dict[str, str]:
        found = {}
        for name, values in self.query.items():
            match = _METADATA_QUERY.match(name)
            if match:
                found[match["key"]] = values[0]
        return found

    @property
    def unix_now(self) -> int:
        return int(self.now.timestamp())


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Call], Reply]


def route(method: str, pattern: str, handler: Callable[[Call], Reply]) -> Route:
    """A route whose ``pattern`` names path segments as ``{name}``."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/"))
    return Route(method, re.compile(f"^{regex}/?$"), handler)


class System:
    """A simulated product: its name (the path prefix), error style, collections and routes."""

    name: str = ""
    style: str = ""
    collections: tuple[str, ...] = ()

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for candidate in self.routes():
            found = candidate.pattern.match(path)
            if found:
                if candidate.method == method:
                    return candidate, found.groupdict()
                allowed.append(candidate.method)
        if allowed:
            raise generic_error(
                self.style, "method", 405, method, headers={"Allow": ", ".join(sorted(allowed))}
            )
        raise generic_error(self.style, "no_route", 404, f"{method}: /{self.name}{path}")

    # Product-specific refusals, overridden by each system.
    def missing(self, name: str) -> ApiError:
        return ApiError(400, "missing", f"{name} is required", field=name)

    def invalid(self, name: str, message: str) -> ApiError:
        return ApiError(400, "invalid", message, field=name)

    def unknown_field(self, name: str) -> ApiError:
        return ApiError(400, "unknown", f"unknown field {name}", field=name)

    def not_found(self, kind: str, identifier: str) -> ApiError:
        return ApiError(404, "not_found", f"no {kind} {identifier}")

    def check(self, body: dict[str, Any], allowed: tuple[str, ...]) -> Fields:
        for name in body:
            if name not in allowed:
                raise self.unknown_field(name)
        return Fields(self, body)


class Fields:
    """Typed reads of a request body, refusing bad values in the product's own words."""

    def __init__(self, system: System, body: dict[str, Any], prefix: str = "") -> None:
        self.system = system
        self.body = body
        self.prefix = prefix

    def _name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _get(self, name: str, required: bool) -> Any:
        value = self.body.get(name)
        if value is None and required:
            raise self.system.missing(self._name(name))
        return value

    def string(self, name: str, *, required: bool = False, max_length: int = 255) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.system.invalid(self._name(name), f"{self._name(name)} must be a string")
        if required and not value.strip():
            raise self.system.missing(self._name(name))
        if len(value) > max_length:
            raise self.system.invalid(
                self._name(name), f"{self._name(name)} is longer than {max_length} characters"
            )
        return value

    def choice(self, name: str, options: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is not None and value not in options:
            raise self.system.invalid(
                self._name(name),
                f"{self._name(name)} must be one of {', '.join(options)}; got {value!r}",
            )
        return value

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.system.invalid(self._name(name), f"{self._name(name)} must be a boolean")
        return value

    def integer(
        self, name: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise self.system.invalid(self._name(name), f"Invalid integer: {value}")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.system.invalid(self._name(name), f"Invalid integer: {value}") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise self.system.invalid(self._name(name), f"Invalid integer: {value}")
        if minimum is not None and number < minimum:
            raise self.system.invalid(
                self._name(name), f"{self._name(name)} must be at least {minimum}"
            )
        return int(number)

    def decimal(
        self, name: str, *, required: bool = False, minimum: Decimal | None = None
    ) -> Decimal | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise self.system.invalid(self._name(name), f"{self._name(name)}: not a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.system.invalid(
                self._name(name), f"{self._name(name)}: {value!r} is not a number"
            ) from None
        if not number.is_finite():
            raise self.system.invalid(self._name(name), f"{self._name(name)}: not a number")
        if minimum is not None and number < minimum:
            raise self.system.invalid(
                self._name(name), f"{self._name(name)} must be at least {minimum}"
            )
        return number

    def date(self, name: str, *, required: bool = False) -> dt.date | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        try:
            if not _DATE.match(value):
                raise ValueError
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.system.invalid(
                self._name(name), f"{self._name(name)}: {value!r} is not a date (YYYY-MM-DD)"
            ) from None

    def currency(self, name: str, *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is not None and not re.fullmatch(r"[A-Za-z]{3}", value):
            raise self.system.invalid(
                self._name(name), f"{self._name(name)}: {value!r} is not an ISO 4217 currency code"
            )
        return value

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.system.invalid(self._name(name), f"{self._name(name)} must be an object")
        return value

    def items(self, name: str, *, required: bool = False, maximum: int = 200) -> list[Any]:
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.system.invalid(self._name(name), f"{self._name(name)} must be a list")
        if required and not value:
            raise self.system.missing(self._name(name))
        if len(value) > maximum:
            raise self.system.invalid(
                self._name(name), f"{self._name(name)} has more than {maximum} entries"
            )
        return value

    def nested(self, value: Any, prefix: str, allowed: tuple[str, ...]) -> Fields:
        if not isinstance(value, dict):
            raise self.system.invalid(prefix.rstrip("."), f"{prefix.rstrip('.')} must be an object")
        for name in value:
            if name not in allowed:
                raise self.system.unknown_field(f"{prefix}{name}")
        return Fields(self.system, value, prefix)


def money(value: Decimal) -> str:
    """A decimal amount as a string with two decimals (never a float)."""
    return str(value.quantize(CENT))


def decimal_text(value: Decimal) -> str:
    """A decimal as a plain string, without exponent and without trailing zeros."""
    return format(value.normalize(), "f")


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, clamped to the end of a shorter month."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def iso_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
