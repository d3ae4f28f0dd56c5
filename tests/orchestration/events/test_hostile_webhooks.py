"""Hostile deliveries at the webhook door: each is answered 4xx with a reason and stored (its
metadata, and of an unauthenticated one only a prefix of the body), never a 500; schema
patterns take ASCII digits only, no trailing newline, and real dates."""

from __future__ import annotations

import time

import pytest

from orchestration.events.catalog import event_validate
from orchestration.events.errors import EventRejected
from orchestration.events.services import UNAUTHENTICATED_BODY_KEPT
from orchestration.models import InboundEvent
from tests.orchestration.events.test_webhooks import body_of, post, quote_approved


@pytest.mark.django_db
def test_deeply_nested_json_is_refused_before_parsing_signed_or_not(client, webhook_secrets):
    # given
    body = b"[" * 2000 + b"]" * 2000
    # when
    signed = post(client, body, secret=webhook_secrets["current"])
    unsigned = post(client, body, secret=None)
    # then
    assert (signed.status_code, signed.json()["reason"]) == (
        400, "JSON nested deeper than 32 levels",
    )  # fmt: skip
    assert (unsigned.status_code, unsigned.json()["reason"]) == (
        401, "missing X-Tandem-Signature header",
    )  # fmt: skip
    rows = list(InboundEvent.objects.order_by("pk").values_list("status", "signature_valid"))
    assert rows == [("rejected", True), ("rejected", False)]


@pytest.mark.django_db
@pytest.mark.parametrize("stamp", ["\u00b2", "1" * 5000, "\u0661\u0667" + "\u0660" * 8])
def test_a_timestamp_that_is_not_plain_ascii_digits_is_a_401(client, webhook_secrets, stamp):
    # given
    body = body_of(quote_approved())
    # when
    response = client.post(
        "/webhooks/cpq/", data=body, content_type="application/json",
        HTTP_X_TANDEM_SIGNATURE=f"t={stamp},v1=abc",
    )  # fmt: skip
    # then
    assert (response.status_code, response.json()["reason"]) == (
        401, "malformed X-Tandem-Signature header (expected t=…,v1=…)",
    )  # fmt: skip
    assert InboundEvent.objects.get().status == "rejected"


@pytest.mark.django_db
def test_an_unsigned_megabyte_keeps_only_a_prefix(client, webhook_secrets):
    # given
    body = b'{"x": "' + b"a" * (1024 * 1024 - 20) + b'"}'
    # when
    response = post(client, body, secret=None)
    # then
    assert response.status_code == 401
    event = InboundEvent.objects.get()
    assert event.raw_body == body[:UNAUTHENTICATED_BODY_KEPT].decode()


def _with_data(**changes: object) -> dict:
    payload = quote_approved()
    return {**payload, "data": {**payload["data"], **changes}}


def _with_account(**changes: object) -> dict:
    payload = quote_approved()
    payload["data"] = {**payload["data"], "account": {**payload["data"]["account"], **changes}}
    return payload


@pytest.mark.parametrize(
    "payload, reason",
    [
        (_with_account(country="GB\n"), "does not match '^[A-Z]{2}$' (at $.data.account.country)"),
        (_with_data(valid_until="2026-0\u0665-04"),
         "does not match '^\\\\d{4}-\\\\d{2}-\\\\d{2}$' (at $.data.valid_until)"),
        (_with_data(valid_until="2026-13-45"),
         "is not a real date or time (at $.data.valid_until)"),
        (_with_data(approved_at="2026-02-30T10:00:00Z"),
         "is not a real date or time (at $.data.approved_at)"),
    ],
)  # fmt: skip
def test_schema_patterns_take_ascii_digits_no_trailing_newline_and_real_dates(payload, reason):
    # when
    with pytest.raises(EventRejected) as rejected:
        event_validate(system="cpq", payload=payload)
    # then
    assert rejected.value.reason == f"quote.approved v1 schema: {reason}"


def test_a_schema_rejection_does_not_repeat_the_personal_data_it_refused():
    # given
    payload = {
        **quote_approved(),
        "data": {**quote_approved()["data"], "account": "jane@example.com"},
    }
    # when
    with pytest.raises(EventRejected) as rejected:
        event_validate(system="cpq", payload=payload)
    # then
    assert "jane@example.com" not in rejected.value.reason
    assert rejected.value.reason == (
        'quote.approved v1 schema: fails type "object" (at $.data.account)'
    )


@pytest.mark.django_db
def test_a_stale_signed_delivery_is_still_refused_after_the_signature_check(
    client, webhook_secrets
):
    # given
    body = body_of(quote_approved())
    # when
    response = post(
        client, body, secret=webhook_secrets["current"], timestamp=int(time.time()) - 10_000
    )
    # then
    assert response.status_code == 401
    assert InboundEvent.objects.get().event_id == ""
