"""Hostile deliveries at the webhook door: each is answered 4xx with a reason and stored (its
metadata, and of an unauthenticated one only a prefix of the body), never a 500; schema
patterns take ASCII digits only, no trailing newline, and real dates."""

from __future__ import annotations

import time

import pytest

from core.audit import Actor
from core.errors import Refused
from orchestration.events.catalog import event_validate
from orchestration.events.errors import EventRejected
from orchestration.events.services import UNAUTHENTICATED_BODY_KEPT, dead_letter_act
from orchestration.models import DeadLetterAction, InboundEvent
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


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload, reason",
    [
        (_with_data(valid_until="2026-13-45"),
         "quote.approved v1 schema: is not a real date or time (at $.data.valid_until)"),
        (_with_account(country="GB\n"),
         "quote.approved v1 schema: does not match '^[A-Z]{2}$' (at $.data.account.country)"),
        ({**quote_approved(), "event_type": "order.accepted"},
         "cpq does not send order.accepted events (expected from erp)"),
    ],
)  # fmt: skip
def test_a_signed_delivery_failing_the_schema_is_answered_400_with_the_reason(
    client, webhook_secrets, django_capture_on_commit_callbacks, payload, reason
):
    # given
    body = body_of(payload)
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, body, secret=webhook_secrets["current"])
    # then: the sender learns why at once; the row keeps the body and the reason, no work queued
    assert (response.status_code, response.json()) == (
        400, {"status": "rejected", "reason": reason},
    )  # fmt: skip
    event = InboundEvent.objects.get()
    assert (event.status, event.signature_valid, event.event_id, event.rejection_reason,
            event.raw_body) == (
        "rejected", True, "evt_cpq_0001", reason, body.decode(),
    )  # fmt: skip
    assert callbacks == []


@pytest.mark.django_db
def test_a_fixed_delivery_of_an_event_refused_at_the_door_is_accepted(client, webhook_secrets):
    # given: the sender was told the event is invalid
    bad = post(
        client, body_of(_with_data(valid_until="2026-13-45")), secret=webhook_secrets["current"]
    )
    # when: it sends the same event id again, fixed
    fixed = post(client, body_of(quote_approved()), secret=webhook_secrets["current"])
    again = post(client, body_of(quote_approved()), secret=webhook_secrets["current"])
    # then
    assert [bad.status_code, fixed.status_code, again.status_code] == [400, 202, 200]
    rows = InboundEvent.objects.order_by("pk").values_list("status", "duplicate_deliveries")
    assert list(rows) == [("rejected", 0), ("received", 1)]


@pytest.mark.django_db
def test_a_rejected_event_whose_fixed_delivery_was_accepted_cannot_be_reprocessed(
    client, webhook_secrets, make_user
):
    # given
    post(client, body_of(_with_data(valid_until="2026-13-45")), secret=webhook_secrets["current"])
    post(client, body_of(quote_approved()), secret=webhook_secrets["current"])
    rejected = InboundEvent.objects.get(status="rejected")
    ivan = Actor.person(make_user("ivan", role="integration_support"))
    # when
    with pytest.raises(Refused) as refused:
        dead_letter_act(inbound_event_id=rejected.pk, action="reprocess", actor=ivan, reason="x")
    # then
    assert str(refused.value) == (
        f"inbound event {rejected.pk}: a later delivery of evt_cpq_0001 was accepted; "
        "discard this one"
    )
    assert sorted(InboundEvent.objects.values_list("status", flat=True)) == [
        "received", "rejected",
    ]  # fmt: skip
    assert DeadLetterAction.objects.count() == 0
