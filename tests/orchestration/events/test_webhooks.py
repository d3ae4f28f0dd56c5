import json
import threading
import time
from pathlib import Path

import pytest
import requests

from orchestration.events.catalog import SCHEMA_DIR
from orchestration.events.selectors import inbound_events_rejected
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent

CPQ_URL = "/webhooks/cpq/"


def quote_approved(event_id: str = "evt_cpq_0001") -> dict:
    schema = json.loads(Path(SCHEMA_DIR, "quote.approved", "v1.json").read_text())
    return {**schema["examples"][0], "event_id": event_id}


def body_of(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def post(client, body: bytes, *, secret: str | None, timestamp: int | None = None,
         url: str = CPQ_URL, **headers: str):  # fmt: skip
    if secret is not None:
        headers["HTTP_X_TANDEM_SIGNATURE"] = signature_header(
            secret=secret, body=body, timestamp=timestamp
        )
    return client.post(url, data=body, content_type="application/json", **headers)


@pytest.mark.django_db
def test_a_signed_event_is_stored_raw_and_accepted(
    client, webhook_secrets, django_capture_on_commit_callbacks
):
    # given
    body = body_of(quote_approved())
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(
            client,
            body,
            secret=webhook_secrets["current"],
            timestamp=int(time.time()),
            HTTP_X_CORRELATION_ID="QUO-000001",
            HTTP_USER_AGENT="cpq-sandbox/1",
        )
    # then
    assert (response.status_code, response.json()) == (
        202, {"status": "accepted", "event_id": "evt_cpq_0001"},
    )  # fmt: skip
    event = InboundEvent.objects.get()
    assert (event.system, event.event_id, event.event_type, event.schema_version, event.status,
            event.signature_valid, event.rejection_reason, event.raw_body, event.correlation_id,
            event.duplicate_deliveries, event.processed_at) == (
        "cpq", "evt_cpq_0001", "quote.approved", "1", "received", True, "", body.decode(),
        "QUO-000001", 0, None,
    )  # fmt: skip
    assert sorted(event.headers) == [
        "Content-Length", "Content-Type", "User-Agent", "X-Correlation-Id", "X-Tandem-Signature",
    ]  # fmt: skip
    assert event.headers["X-Tandem-Signature"].endswith(",v1=…")
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_the_previous_secret_is_accepted_during_rotation(client, webhook_secrets):
    # given
    body = body_of(quote_approved())
    # when
    response = post(client, body, secret=webhook_secrets["previous"])
    # then
    assert response.status_code == 202
    assert InboundEvent.objects.get().signature_valid is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("secret", "age_seconds", "status", "reason"),
    [
        ("whsec_wrong", 0, 401, "signature does not match"),
        ("whsec_current_cpq", 400, 401, "signature timestamp is older than the 300 s tolerance"),
        ("whsec_current_cpq", -400, 401,
         "signature timestamp is further in the future than the 300 s tolerance"),
        (None, 0, 401, "missing X-Tandem-Signature header"),
    ],
)  # fmt: skip
def test_unauthentic_deliveries_are_stored_and_rejected(
    client, webhook_secrets, django_capture_on_commit_callbacks, secret, age_seconds, status,
    reason,
):  # fmt: skip
    # given
    body = body_of(quote_approved())
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, body, secret=secret, timestamp=int(time.time()) - age_seconds)
    # then
    assert (response.status_code, response.json()) == (
        status, {"status": "rejected", "reason": reason},
    )  # fmt: skip
    event = InboundEvent.objects.get()  # nothing of an unauthenticated body is parsed
    assert (event.event_id, event.status, event.signature_valid, event.rejection_reason,
            event.raw_body) == (
        "", "rejected", False, reason, body[:256].decode(),
    )  # fmt: skip
    assert callbacks == []
    assert list(inbound_events_rejected()) == [event]


@pytest.mark.django_db
def test_a_malformed_signature_header_is_rejected(client, webhook_secrets):
    # given
    body = body_of(quote_approved())
    # when
    response = client.post(CPQ_URL, data=body, content_type="application/json",
                           HTTP_X_TANDEM_SIGNATURE="sha256=abc")  # fmt: skip
    # then
    assert (response.status_code, response.json()["reason"]) == (
        401, "malformed X-Tandem-Signature header (expected t=…,v1=…)",
    )  # fmt: skip
    assert InboundEvent.objects.get().status == "rejected"


@pytest.mark.django_db
def test_malformed_json_is_stored_and_rejected_with_the_reason(client, webhook_secrets):
    # given
    body = b'{"event_id": "evt_1", "event_type": '
    # when
    response = post(client, body, secret=webhook_secrets["current"])
    # then
    reason = "malformed JSON: Expecting value: line 1 column 37 (char 36)"
    assert (response.status_code, response.json()) == (
        400, {"status": "rejected", "reason": reason},
    )  # fmt: skip
    event = InboundEvent.objects.get()
    assert (event.event_id, event.status, event.signature_valid, event.rejection_reason,
            event.raw_body) == ("", "rejected", True, reason, body.decode())  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "the payload is not a JSON object"),
        ({"event_type": "quote.approved"}, "the payload has no event_id (a non-empty string)"),
        ({"event_id": "evt_9"}, "the payload has no event_type (a non-empty string)"),
    ],
)
def test_an_envelope_without_id_or_type_is_rejected(client, webhook_secrets, payload, reason):
    # given
    body = json.dumps(payload).encode()
    # when
    response = post(client, body, secret=webhook_secrets["current"])
    # then
    assert (response.status_code, response.json()["reason"]) == (400, reason)
    assert InboundEvent.objects.values_list("status", "rejection_reason").get() == (
        "rejected", reason,
    )  # fmt: skip


@pytest.mark.django_db
def test_invalid_utf8_is_stored_and_rejected(client, webhook_secrets):
    # given
    body = b'{"event_id": "evt_\xff"}'
    # when
    response = post(client, body, secret=webhook_secrets["current"])
    # then
    assert (response.status_code, response.json()["reason"]) == (400, "body is not valid UTF-8")
    assert InboundEvent.objects.get().raw_body == '{"event_id": "evt_\ufffd"}'


@pytest.mark.django_db
def test_an_oversized_body_is_rejected_keeping_only_a_prefix(client, webhook_secrets, settings):
    # given
    settings.WEBHOOK_MAX_BODY_BYTES = 2048
    body = body_of({**quote_approved(), "padding": "p" * 4000})
    # when
    response = post(client, body, secret=webhook_secrets["current"])
    # then
    assert (response.status_code, response.json()["reason"]) == (
        413, "body is larger than 2048 bytes",
    )  # fmt: skip
    assert InboundEvent.objects.get().raw_body == body[:256].decode()


@pytest.mark.django_db
def test_no_configured_secret_is_a_server_side_refusal(client, webhook_secrets):
    # given
    body = body_of({**quote_approved(), "event_type": "order.accepted"})
    # when
    response = post(client, body, secret="anything", url="/webhooks/erp/")
    # then
    assert (response.status_code, response.json()["reason"]) == (
        503, "no webhook secret is configured for this system",
    )  # fmt: skip
    assert InboundEvent.objects.values_list("system", "status").get() == ("erp", "rejected")


@pytest.mark.django_db
def test_a_duplicate_is_absorbed_without_a_second_row(
    client, webhook_secrets, django_capture_on_commit_callbacks
):
    # given
    body = body_of(quote_approved())
    post(client, body, secret=webhook_secrets["current"])
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, body, secret=webhook_secrets["previous"])
    # then
    assert (response.status_code, response.json()) == (
        200, {"status": "duplicate", "event_id": "evt_cpq_0001"},
    )  # fmt: skip
    event = InboundEvent.objects.get()
    assert (event.status, event.duplicate_deliveries) == ("received", 1)
    assert event.last_delivered_at is not None
    assert callbacks == []


@pytest.mark.django_db
def test_a_forged_delivery_cannot_block_the_genuine_event(client, webhook_secrets):
    # given
    body = body_of(quote_approved())
    post(client, body, secret="whsec_forged")
    # when
    response = post(client, body, secret=webhook_secrets["current"])
    # then
    assert response.status_code == 202
    assert list(
        InboundEvent.objects.order_by("pk").values_list("event_id", "signature_valid", "status")
    ) == [("", False, "rejected"), ("evt_cpq_0001", True, "received")]


@pytest.mark.django_db
def test_the_same_event_id_from_another_system_is_a_different_event(client, webhook_secrets):
    # given
    post(client, body_of(quote_approved()), secret=webhook_secrets["current"])
    invoice = json.loads(Path(SCHEMA_DIR, "invoice.posted", "v1.json").read_text())["examples"][0]
    body = body_of({**invoice, "event_id": quote_approved()["event_id"]})
    # when
    response = post(client, body, secret="whsec_billing", url="/webhooks/billing/")
    # then
    assert response.status_code == 202
    assert sorted(InboundEvent.objects.values_list("system", flat=True)) == ["billing", "cpq"]


@pytest.mark.django_db
def test_only_post_is_allowed_and_only_known_systems_have_an_endpoint(client, webhook_secrets):
    # when
    get = client.get(CPQ_URL)
    unknown = client.post("/webhooks/mainframe/", data=b"{}", content_type="application/json")
    # then
    assert (get.status_code, unknown.status_code) == (405, 404)
    assert InboundEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_20_times_concurrently_makes_one_row(live_server,
                                                                      webhook_secrets):  # fmt: skip
    # given
    body = body_of(quote_approved("evt_cpq_race"))
    header = signature_header(secret=webhook_secrets["current"], body=body)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def deliver() -> None:
        barrier.wait()
        response = requests.post(
            f"{live_server.url}{CPQ_URL}",
            data=body,
            headers={"Content-Type": "application/json", "X-Tandem-Signature": header},
            timeout=60,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(20)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert sorted(statuses) == [200] * 19 + [202]
    event = InboundEvent.objects.get()
    assert (event.event_id, event.status, event.duplicate_deliveries) == (
        "evt_cpq_race", "received", 19,
    )  # fmt: skip
