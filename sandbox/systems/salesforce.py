"""Salesforce conventions shared by the simulated CRM and CPQ (one org in real life)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sandbox.errors import SALESFORCE, ApiError
from sandbox.ids import salesforce_checksum
from sandbox.systems.base import System

_ID = re.compile(r"^[0-9A-Za-z]{15}([0-9A-Za-z]{3})?$")


def sf_datetime(moment: dt.datetime) -> str:
    """Salesforce's REST date-time format: ``2026-01-05T10:15:00.000+0000``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}+0000"
    )


def sf_parse_datetime(value: str) -> dt.datetime | None:
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return dt.datetime.strptime(value.replace("Z", "+0000"), pattern)
        except ValueError:
            continue
    return None


class SalesforceSystem(System):
    style = SALESFORCE
    sobject = ""

    def missing(self, name: str) -> ApiError:
        return ApiError(
            400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", field=name
        )

    def invalid(self, name: str, message: str) -> ApiError:
        return ApiError(400, "FIELD_INTEGRITY_EXCEPTION", message, field=name)

    def unknown_field(self, name: str) -> ApiError:
        return ApiError(
            400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {self.sobject}"
        )

    def not_found(self, kind: str, identifier: str) -> ApiError:
        return ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def record_id(self, identifier: str) -> str:
        """The 18-character form of ``identifier``; a malformed id is refused like Salesforce."""
        if not _ID.match(identifier):
            raise ApiError(
                400,
                "MALFORMED_ID",
                f"{self.sobject} ID: id value of incorrect type: {identifier}",
            )
        return identifier if len(identifier) == 18 else identifier + salesforce_checksum(identifier)

    def lookup(self, records: dict[str, Any], identifier: str) -> dict[str, Any]:
        record = records.get(self.record_id(identifier))
        if record is None:
            raise self.not_found(self.sobject, identifier)
        return record


def query_result(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The shape of a Salesforce query response."""
    return {"totalSize": len(records), "done": True, "records": records}
