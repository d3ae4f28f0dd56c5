"""Per-client rate limits at the webhook door, and unauthenticated floods grow a counter, not
the table: past ``WEBHOOK_RATE_LIMIT`` a client (an address, per system) is answered 429 with
``Retry-After`` and nothing is stored; another client, another system and the console are
untouched; a repeated unauthenticated refusal is counted on the row it repeats."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.ratelimit import rate_limit_hit
from orchestration.models import InboundEvent
from tests.orchestration.events.test_webhooks import body_of, post, quote_approved


@pytest.mark.django_db
def test_a_flooding_client_gets_429_while_another_client_and_the_console_are_served(
    client, webhook_secrets, settings, make_user, django_capture_on_commit_callbacks
):
    # given: client A has used up its rate
    settings.WEBHOOK_RATE_LIMIT = "3/min"
    secret = webhook_secrets["current"]
    a_statuses = [
        post(client, body_of(quote_approved(f"evt_a_{n}")), secret=secret,
             REMOTE_ADDR="10.0.0.1").status_code
        for n in range(5)
    ]  # fmt: skip
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        throttled = post(
            client, body_of(quote_approved("evt_a_x")), secret=secret, REMOTE_ADDR="10.0.0.1"
        )
        b = post(client, body_of(quote_approved("evt_b_1")), secret=secret, REMOTE_ADDR="10.0.0.2")
    client.force_login(make_user("ivan", role="integration_support"))
    console = client.get(reverse("dead-letter-list"))
    # then
    assert a_statuses == [202, 202, 202, 429, 429]
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert throttled.json()["status"] == "throttled"
    assert b.status_code == 202
    assert len(callbacks) == 1  # only B's event goes to a worker
    stored = sorted(InboundEvent.objects.values_list("event_id", flat=True))
    assert stored == ["evt_a_0", "evt_a_1", "evt_a_2", "evt_b_1"]
    assert console.status_code == 200
    assert console.context["throttled"] == {"cpq": 3}
    assert b"Refused by the rate limit today (not stored): cpq 3." in console.content


@pytest.mark.django_db
def test_the_limit_is_per_system_for_one_address(client, webhook_secrets, settings):
    # given: the address has used up its rate on the CPQ endpoint
    settings.WEBHOOK_RATE_LIMIT = "1/min"
    post(client, body_of(quote_approved("evt_1")), secret=webhook_secrets["current"])
    cpq_again = post(client, body_of(quote_approved("evt_2")), secret=webhook_secrets["current"])
    # when
    billing = post(client, b"{}", secret=None, url="/webhooks/billing/")
    # then
    assert (cpq_again.status_code, billing.status_code) == (429, 401)


def test_a_fixed_window_counts_per_client_and_resets_with_the_next_window():
    # given: 2 a minute, at 10 s into a window
    start = 6_000_000.0 + 10
    # when
    hits = [rate_limit_hit(scope="t", client="a", rate="2/min", now=start) for _ in range(3)]
    other = rate_limit_hit(scope="t", client="b", rate="2/min", now=start)
    next_window = rate_limit_hit(scope="t", client="a", rate="2/min", now=start + 50)
    # then: the third waits the 50 s left of the window
    assert (hits, other, next_window) == ([None, None, 50], None, None)


@pytest.mark.django_db
def test_an_unsigned_flood_is_counted_on_one_row_per_address_and_reason(client, webhook_secrets):
    # given
    body = b'{"x": "' + b"a" * 10_000 + b'"}'
    # when
    answers = [post(client, body, secret=None, REMOTE_ADDR="10.0.0.9") for _ in range(20)]
    forged = post(client, body, secret="whsec_wrong", REMOTE_ADDR="10.0.0.9")
    elsewhere = post(client, body, secret=None, REMOTE_ADDR="10.0.0.10")
    # then: each is still answered with its reason
    assert {(r.status_code, r.json()["reason"]) for r in answers} == {
        (401, "missing X-Tandem-Signature header")
    }
    assert (forged.status_code, elsewhere.status_code) == (401, 401)
    rows = InboundEvent.objects.order_by("pk").values_list(
        "client_address", "rejection_reason", "duplicate_deliveries", "raw_body"
    )
    assert list(rows) == [
        ("10.0.0.9", "missing X-Tandem-Signature header", 19, body[:256].decode()),
        ("10.0.0.9", "signature does not match", 0, body[:256].decode()),
        ("10.0.0.10", "missing X-Tandem-Signature header", 0, body[:256].decode()),
    ]
