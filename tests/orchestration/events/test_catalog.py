import json

import pytest
from jsonschema import Draft202012Validator

from orchestration.events.catalog import (
    CANONICAL_EVENT_TYPES,
    EVENT_SOURCES,
    SCHEMA_DIR,
    event_validate,
)


def test_every_canonical_event_has_a_v1_schema_and_nothing_else_does():
    # when
    on_disk = sorted(path.parent.name for path in SCHEMA_DIR.glob("*/v*.json"))
    # then
    assert on_disk == sorted(CANONICAL_EVENT_TYPES)
    assert sorted(CANONICAL_EVENT_TYPES) == [
        "amendment.processed", "cancellation.processed", "credit_note.issued", "invoice.posted",
        "invoice.voided", "order.accepted", "order.rejected", "payment.failed",
        "payment.received", "payment.refunded", "quote.approved", "renewal.processed",
        "subscription.activated", "usage.reported",
    ]  # fmt: skip


@pytest.mark.parametrize("event_type", CANONICAL_EVENT_TYPES)
def test_each_schema_is_valid_and_its_example_passes(event_type):
    # given
    schema = json.loads((SCHEMA_DIR / event_type / "v1.json").read_text())
    Draft202012Validator.check_schema(schema)
    [payload] = schema["examples"]
    source = sorted(EVENT_SOURCES[event_type])[0]
    # when
    canonical = event_validate(system=source, payload=payload)
    # then
    assert canonical == event_type
    assert schema["required"] == ["event_id", "event_type", "schema_version", "occurred_at", "data"]


def test_quote_approved_carries_what_the_order_needs():
    # given
    schema = json.loads((SCHEMA_DIR / "quote.approved" / "v1.json").read_text())
    data = schema["properties"]["data"]
    line = schema["$defs"]["commercial_line"]
    # then
    assert data["required"] == [
        "cpq_quote_id", "approved_at", "account", "legal_entity_code", "currency", "lines",
    ]  # fmt: skip
    assert sorted(data["properties"]["account"]["properties"]) == [
        "address", "country", "crm_id", "currency", "domain", "name", "tax_id",
    ]  # fmt: skip
    assert sorted(line["properties"]) == [
        "billing_period", "description", "discount_percent", "kind", "line_no", "product_code",
        "quantity", "term_end", "term_start", "unit_price",
    ]  # fmt: skip
    assert line["properties"]["unit_price"] == {"$ref": "#/$defs/decimal"}
    assert schema["$defs"]["decimal"]["type"] == "string"
