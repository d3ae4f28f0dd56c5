from __future__ import annotations

import pytest

CUSTOMER = {"name": "Northwind", "metadata": {"tandem_account": "ACC-000001"}}


def test_same_key_and_body_replays_the_first_response(sandbox):
    # given
    first = sandbox.post("billing", "/customers", CUSTOMER, key="cust-ACC-000001")

    # when
    second = sandbox.post("billing", "/customers", CUSTOMER, key="cust-ACC-000001")

    # then
    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Idempotency-Key"] == "cust-ACC-000001"
    assert second.json() == first.json()
    assert sandbox.state("billing")["counts"]["customers"] == 1


def test_same_key_with_a_different_body_is_a_422(sandbox):
    # given
    sandbox.post("billing", "/customers", CUSTOMER, key="k-1")

    # when
    response = sandbox.post("billing", "/customers", {"name": "Someone else"}, key="k-1")

    # then
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "idempotency_error"
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert sandbox.state("billing")["counts"]["customers"] == 1


@pytest.mark.parametrize(
    ("system", "path", "body", "error_code"),
    [
        ("crm", "/accounts", {"Name": "Acme"}, "IDEMPOTENCY_KEY_REUSED"),
        ("tax", "/addresses/resolve", {"postalCode": "94105", "country": "US"}, None),
    ],
)
def test_mismatch_is_refused_in_every_systems_own_error_shape(
    sandbox, system, path, body, error_code
):
    # given
    sandbox.post(system, path, body, key="shared-key")

    # when
    response = sandbox.post(system, path, {**body, "extra": "x"}, key="shared-key")

    # then
    assert response.status_code == 422
    if system == "crm":
        assert response.json()[0]["errorCode"] == error_code
    else:
        assert response.json()["error"]["code"] == "IdempotencyKeyMismatch"


def test_keys_are_per_system(sandbox):
    # given
    sandbox.post("crm", "/accounts", {"Name": "Acme"}, key="same")

    # when
    response = sandbox.post("billing", "/customers", {"name": "Acme"}, key="same")

    # then
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers


def test_without_a_key_each_post_creates_a_record(sandbox):
    # when
    sandbox.post("billing", "/customers", CUSTOMER)
    sandbox.post("billing", "/customers", CUSTOMER)

    # then
    assert sandbox.state("billing")["counts"]["customers"] == 2


def test_a_validation_failure_is_not_stored_under_the_key(sandbox):
    # given
    refused = sandbox.post("billing", "/customers", {"colour": "red"}, key="k-2")

    # when
    accepted = sandbox.post("billing", "/customers", CUSTOMER, key="k-2")

    # then
    assert refused.status_code == 400
    assert accepted.status_code == 200
    assert "Idempotent-Replayed" not in accepted.headers


def test_a_declined_payment_is_replayed_not_retried(sandbox):
    # given
    body = {
        "amount": 5000,
        "currency": "usd",
        "payment_method": "pm_card_chargeDeclined",
        "confirm": True,
    }
    first = sandbox.post("payments", "/payment_intents", body, key="pay-1")

    # when
    second = sandbox.post("payments", "/payment_intents", body, key="pay-1")

    # then
    assert second.status_code == 402
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert sandbox.state("payments")["counts"] == {"payment_intents": 1}


def test_replay_does_not_emit_the_webhook_again(sandbox, receiver):
    # given
    body = {"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    body["invoice"] = "in_1"
    sandbox.post("payments", "/payment_intents", body, key="pay-2")

    # when
    sandbox.post("payments", "/payment_intents", body, key="pay-2")

    # then
    receiver.wait_for(1)
    events = sandbox.control("GET", "/webhooks", None).json()
    assert events["count"] == 1
