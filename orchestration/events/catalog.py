"""The canonical business events: their versioned JSON Schemas and who may send them.

Schemas live in ``schemas/<event_type>/v<version>.json`` (JSON Schema 2020-12), each with an
example. A system-specific event name maps onto a canonical type through ``SYSTEM_ALIASES``;
the payload is then validated against the canonical schema. An event from a system that
does not produce that type is unmappable and rejected.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from orchestration.events.errors import EventRejected

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

EVENT_SOURCES: dict[str, frozenset[str]] = {
    "quote.approved": frozenset({"cpq"}),
    "order.accepted": frozenset({"erp"}),
    "subscription.activated": frozenset({"billing"}),
    "invoice.posted": frozenset({"billing", "erp"}),
    "payment.received": frozenset({"payments", "billing", "erp"}),
    "amendment.processed": frozenset({"cpq", "billing"}),
    "renewal.processed": frozenset({"cpq", "billing"}),
    "cancellation.processed": frozenset({"cpq", "billing"}),
    "usage.reported": frozenset({"billing"}),
    "invoice.voided": frozenset({"billing"}),
    "payment.failed": frozenset({"billing", "payments"}),
    "payment.refunded": frozenset({"billing", "payments", "erp"}),
    "credit_note.issued": frozenset({"billing", "erp"}),
    "order.rejected": frozenset({"erp"}),
}
CANONICAL_EVENT_TYPES = list(EVENT_SOURCES)

SYSTEM_ALIASES: dict[str, dict[str, str]] = {
    "billing": {
        "customer.subscription.activated": "subscription.activated",
        "invoice.finalized": "invoice.posted",
        "invoice.paid": "payment.received",
        "invoice.payment_failed": "payment.failed",
        "charge.refunded": "payment.refunded",
        "credit_note.created": "credit_note.issued",
        "customer.subscription.deleted": "cancellation.processed",
    },
    "payments": {"payment_intent.succeeded": "payment.received"},
    "erp": {"salesorder.approved": "order.accepted", "salesorder.rejected": "order.rejected"},
}


# The schemas' date and time patterns; a value that matches one must also be a real date.
_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DATETIME_PREFIX = r"^\d{4}-\d{2}-\d{2}T"


def _strict_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """``pattern`` as the schemas mean it: ASCII digits only (Python's ``\\d`` takes any
    Unicode digit), ``$`` at the very end (Python's allows a trailing newline), and a date
    that exists."""
    if not isinstance(instance, str):
        return
    found = re.search(pattern, instance, flags=re.ASCII)
    if found is None or (pattern.endswith("$") and found.end() != len(instance)):
        yield ValidationError(f"does not match {pattern!r}")
        return
    try:
        if pattern == _DATE_PATTERN:
            dt.date.fromisoformat(instance)
        elif pattern.startswith(_DATETIME_PREFIX):
            dt.datetime.fromisoformat(instance)
    except ValueError:
        yield ValidationError("is not a real date or time")


StrictValidator = validators.extend(Draft202012Validator, {"pattern": _strict_pattern})


def _safe_message(error: ValidationError) -> str:
    """The schema error without the offending value: it may be personal data (an e-mail, an
    address) and the message is stored, logged and answered to the sender."""
    if error.validator in {"required", "additionalProperties", "pattern"}:
        return str(error.message)
    return f"fails {error.validator} {json.dumps(error.validator_value)[:100]}"


@functools.cache
def schema_validator(event_type: str, version: int) -> Any:
    """The validator for one schema version, or None when the repo has no such schema."""
    if event_type not in EVENT_SOURCES or version < 1:
        return None
    path = SCHEMA_DIR / event_type / f"v{version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    StrictValidator.check_schema(schema)
    return StrictValidator(schema)


def canonical_type_of(*, system: str, event_type: str) -> str:
    return SYSTEM_ALIASES.get(system, {}).get(event_type, event_type)


def event_validate(*, system: str, payload: Any) -> str:
    """Return the canonical type of ``payload`` from ``system``, or raise ``EventRejected``."""
    if not isinstance(payload, dict):
        raise EventRejected("the payload is not a JSON object")
    event_type = payload.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected("the payload has no event_type")
    canonical = canonical_type_of(system=system, event_type=event_type)
    if canonical not in EVENT_SOURCES:
        raise EventRejected(f"unknown event type {event_type!r} from {system}")
    if system not in EVENT_SOURCES[canonical]:
        raise EventRejected(
            f"{system} does not send {canonical} events (expected from "
            f"{', '.join(sorted(EVENT_SOURCES[canonical]))})",
            canonical_type=canonical,
        )
    version = payload.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise EventRejected(
            f"{canonical}: schema_version must be an integer, got {version!r}",
            canonical_type=canonical,
        )
    validator = schema_validator(canonical, version)
    if validator is None:
        raise EventRejected(
            f"{canonical}: no schema v{version} in this release", canonical_type=canonical
        )
    error = best_match(validator.iter_errors({**payload, "event_type": canonical}))
    if error is not None:
        raise EventRejected(
            f"{canonical} v{version} schema: {_safe_message(error)} (at {error.json_path})",
            canonical_type=canonical,
        )
    return canonical
