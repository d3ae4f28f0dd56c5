"""What the Stripe connector puts on the wire, and how Stripe's error answers are classed.

A loopback server answers as Stripe would (localstripe cannot throttle or fail on demand).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.logging import correlation
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import Party
from orchestration.connectors.stripe.billing import StripeBilling
from orchestration.models import OutboundCall

pytestmark = pytest.mark.django_db(transaction=True)

PARTY = Party(reference="ACC-000007", name="Contoso Ltd", country="gb", currency="GBP",
              email="ap@contoso.example")  # fmt: skip
CUSTOMER = {"id": "cus_7", "object": "customer", "email": "ap@contoso.example",
            "name": "Contoso Ltd", "metadata": {"tandem_account": "ACC-000007"}}  # fmt: skip


@pytest.fixture
def stripe_remote(settings: Any, remote: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", "sk_test_wire_123")
    settings.TANDEM_CONNECTORS = {
        **settings.TANDEM_CONNECTORS,
        "billing": {"base_url": remote.url, "credential_env": "CONNECTOR_BILLING_API_KEY",
                    "connect_timeout": 2.0, "read_timeout": 2.0, "rate_limit_per_second": 50.0},
    }  # fmt: skip
    return remote


def test_a_create_sends_the_step_key_the_secret_key_and_a_form_body(stripe_remote):
    # given
    stripe_remote.respond(200, json_body=CUSTOMER)
    # when
    with correlation("ORD-000007"):
        created = StripeBilling(catalog="plans").customer_create(
            party=PARTY, idempotency_key="ORD-000007:v1:upsert_customer_billing"
        )
    # then
    assert created.id == "cus_7"
    [sent] = stripe_remote.received
    assert (sent.method, sent.path) == ("POST", "/v1/customers")
    assert sent.headers["Idempotency-Key"] == "ORD-000007:v1:upsert_customer_billing"
    assert sent.headers["Authorization"] == "Bearer sk_test_wire_123"
    assert sent.headers["X-Correlation-Id"] == "ORD-000007"
    assert sent.headers["Stripe-Version"]
    assert parse_qs(sent.body.decode()) == {
        "name": ["Contoso Ltd"], "metadata[tandem_account]": ["ACC-000007"],
        "email": ["ap@contoso.example"], "address[country]": ["GB"],
    }  # fmt: skip
    row = OutboundCall.objects.get()
    assert (row.operation, row.idempotency_key, row.correlation_id, row.outcome) == (
        "customer_create", "ORD-000007:v1:upsert_customer_billing", "ORD-000007", "ok",
    )  # fmt: skip
    assert "sk_test_wire_123" not in row.request_body
    assert "ap@contoso.example" not in row.request_body + row.response_body


@pytest.mark.parametrize(
    ("status", "error", "headers", "error_type", "kind", "retry_after"),
    [
        (429, {"type": "invalid_request_error", "message": "Too many requests"},
         {"Retry-After": "7"}, RetryableError, "rate_limited", 7),
        (500, {"type": "api_error", "message": "Something went wrong"}, {}, RetryableError,
         "server_error", None),
        (409, {"type": "idempotency_error", "message": "A request with this key is running"},
         {}, PermanentError, "conflict", None),
        (402, {"type": "card_error", "code": "card_declined", "message": "Your card was declined."},
         {}, PermanentError, "card_declined", None),
        (400, {"type": "invalid_request_error", "message": "No such customer: 'cus_x'"}, {},
         PermanentError, "validation", None),
        (401, {"type": "invalid_request_error", "message": "Invalid API Key provided"}, {},
         PermanentError, "auth", None),
    ],
)  # fmt: skip
def test_stripe_errors_are_classed_and_the_call_recorded(
    stripe_remote, status, error, headers, error_type, kind, retry_after
):
    # given
    stripe_remote.respond(status, json_body={"error": error}, headers=headers)
    # when
    with pytest.raises(error_type) as raised:
        StripeBilling(catalog="plans").customer_create(party=PARTY, idempotency_key="k1")
    # then
    assert (raised.value.kind, raised.value.status, raised.value.retry_after) == (
        kind, status, retry_after,
    )  # fmt: skip
    assert raised.value.message == error["message"]
    row = OutboundCall.objects.get()
    assert raised.value.outbound_call_id == row.pk
    assert (row.status_code, row.outcome) == (
        status, "retryable" if error_type is RetryableError else "permanent",
    )  # fmt: skip
    assert len(stripe_remote.received) == 1  # the SDK itself never retries


def test_with_prices_customers_are_found_through_the_search_api(stripe_remote):
    # given
    result = {"object": "search_result", "data": [CUSTOMER], "has_more": False,
              "url": "/v1/customers/search"}  # fmt: skip
    stripe_remote.respond(200, json_body=result)
    # when
    found = StripeBilling(catalog="prices").customer_find(reference="ACC-000007")
    # then
    assert found is not None and found.id == "cus_7"
    [sent] = stripe_remote.received
    assert urlsplit(sent.path).path == "/v1/customers/search"
    assert parse_qs(urlsplit(sent.path).query) == {
        "query": ["metadata['tandem_account']:'ACC-000007'"], "limit": ["100"],
    }  # fmt: skip
    assert "Idempotency-Key" not in sent.headers
    assert OutboundCall.objects.get().path == "/v1/customers/search"
