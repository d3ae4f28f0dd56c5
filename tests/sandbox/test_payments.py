from __future__ import annotations


def test_confirmed_intent_with_automatic_capture_succeeds(sandbox, receiver):
    # when
    response = sandbox.post(
        "payments",
        "/payment_intents",
        {
            "amount": 108000,
            "currency": "gbp",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "invoice": "in_1",
            "metadata": {"invoice_number": "E7052C32-0001"},
        },
    )

    # then
    assert response.status_code == 200
    intent = response.json()
    assert intent["id"].startswith("pi_")
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == 108000
    assert intent["latest_charge"].startswith("ch_")
    [delivery] = receiver.wait_for(1)
    assert delivery.path == "/webhooks/payments/"
    assert delivery.payload["event_type"] == "payment.received"
    assert delivery.payload["data"]["amount"] == "1080.00"
    assert delivery.payload["data"]["currency"] == "GBP"
    assert delivery.payload["data"]["external_invoice_id"] == "in_1"


def test_manual_capture(sandbox, receiver):
    # given
    intent = sandbox.post(
        "payments",
        "/payment_intents",
        {
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
            "invoice": "in_2",
        },
    ).json()

    # when
    captured = sandbox.post("payments", f"/payment_intents/{intent['id']}/capture")
    again = sandbox.post("payments", f"/payment_intents/{intent['id']}/capture")

    # then
    assert intent["status"] == "requires_capture"
    assert intent["amount_capturable"] == 5000
    assert captured.json()["status"] == "succeeded"
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "payment_intent_unexpected_state"
    assert [d.payload["event_type"] for d in receiver.wait_for(1)] == ["payment.received"]


def test_declined_card_is_a_402_and_the_intent_exists(sandbox):
    # when
    response = sandbox.post(
        "payments",
        "/payment_intents",
        {
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclined",
            "confirm": True,
        },
    )

    # then
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == "generic_decline"
    assert error["payment_intent"]["status"] == "requires_payment_method"
    [stored] = sandbox.state("payments")["records"]["payment_intents"]
    assert stored["id"] == error["payment_intent"]["id"]


def test_amount_below_the_minimum_is_refused(sandbox):
    # when
    response = sandbox.post("payments", "/payment_intents", {"amount": 10, "currency": "usd"})

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "amount_too_small"
    assert sandbox.state("payments")["counts"] == {"payment_intents": 0}


def test_find_intents_by_metadata(sandbox):
    # given
    created = sandbox.post(
        "payments",
        "/payment_intents",
        {"amount": 5000, "currency": "usd", "metadata": {"tandem_invoice": "INV-000001"}},
    ).json()

    # when
    response = sandbox.get(
        "payments", "/payment_intents", params={"metadata[tandem_invoice]": "INV-000001"}
    )

    # then
    assert created["status"] == "requires_payment_method"
    assert [intent["id"] for intent in response.json()["data"]] == [created["id"]]
