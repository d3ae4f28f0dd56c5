from __future__ import annotations

from tests.sandbox.helpers import billing_customer, billing_price


def test_customer_create_get_and_find_by_metadata(sandbox):
    # given
    customer = billing_customer(sandbox, metadata={"tandem_account": "ACC-000001"})
    billing_customer(sandbox, name="Other", metadata={"tandem_account": "ACC-000002"})

    # when
    fetched = sandbox.get("billing", f"/customers/{customer['id']}")
    found = sandbox.get("billing", "/customers", params={"metadata[tandem_account]": "ACC-000001"})

    # then
    assert customer["id"].startswith("cus_")
    assert len(customer["id"]) == 18
    assert customer["object"] == "customer"
    assert customer["metadata"] == {"tandem_account": "ACC-000001"}
    assert fetched.json() == customer
    assert found.json() == {
        "object": "list",
        "url": "/billing/customers",
        "has_more": False,
        "data": [customer],
    }


def test_unknown_customer_is_a_stripe_resource_missing(sandbox):
    # when
    response = sandbox.get("billing", "/customers/cus_nope")

    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": "No such customer: 'cus_nope'",
            "param": "id",
        }
    }


def test_unknown_parameter_is_refused(sandbox):
    # when
    response = sandbox.post("billing", "/customers", {"name": "Acme", "colour": "red"})

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_unknown"
    assert response.json()["error"]["message"] == "Received unknown parameter: colour"


def test_subscription_create_activates_and_issues_the_first_invoice(sandbox):
    # given
    customer = billing_customer(sandbox)
    price = billing_price(sandbox)

    # when
    response = sandbox.post(
        "billing",
        "/subscriptions",
        {
            "customer": customer["id"],
            "items": [{"price": price["id"], "quantity": 25}],
            "metadata": {"tandem_order": "ORD-000001", "tandem_contract": "CTR-000001"},
            "billing_cycle_anchor": 1767225600,
        },
    )

    # then
    assert response.status_code == 200
    subscription = response.json()
    assert subscription["id"].startswith("sub_")
    assert subscription["status"] == "active"
    assert subscription["current_period_start"] == 1767225600
    assert subscription["current_period_end"] == 1769904000
    [item] = subscription["items"]["data"]
    assert item["id"].startswith("si_")
    assert item["price"]["id"] == price["id"]
    assert item["quantity"] == 25
    invoice = sandbox.get("billing", f"/invoices/{subscription['latest_invoice']}").json()
    assert invoice["status"] == "open"
    assert invoice["total"] == 90000
    assert invoice["number"] == f"{customer['invoice_prefix']}-0001"
    assert invoice["subscription"] == subscription["id"]


def test_subscription_search_by_metadata_finds_an_effect_whose_response_was_lost(sandbox):
    # given
    customer = billing_customer(sandbox)
    price = billing_price(sandbox)
    created = sandbox.post(
        "billing",
        "/subscriptions",
        {
            "customer": customer["id"],
            "items": [{"price": price["id"]}],
            "metadata": {"tandem_order": "ORD-000001"},
        },
    ).json()

    # when
    response = sandbox.get(
        "billing", "/subscriptions", params={"metadata[tandem_order]": "ORD-000001"}
    )
    other = sandbox.get("billing", "/subscriptions", params={"metadata[tandem_order]": "ORD-9"})

    # then
    assert [sub["id"] for sub in response.json()["data"]] == [created["id"]]
    assert other.json()["data"] == []


def test_subscription_with_a_one_time_price_is_refused(sandbox):
    # given
    customer = billing_customer(sandbox)
    one_time = billing_price(sandbox, recurring=None)

    # when
    response = sandbox.post(
        "billing",
        "/subscriptions",
        {"customer": customer["id"], "items": [{"price": one_time["id"]}]},
    )

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_invalid"
    assert sandbox.state("billing")["counts"]["subscriptions"] == 0


def test_invoice_draft_finalize_pay(sandbox):
    # given
    customer = billing_customer(sandbox)
    setup = billing_price(sandbox, recurring=None, unit_amount=150000)
    draft = sandbox.post(
        "billing",
        "/invoices",
        {
            "customer": customer["id"],
            "currency": "gbp",
            "metadata": {"tandem_order": "ORD-000001"},
            "lines": [{"price": setup["id"]}, {"amount": 2500, "description": "Travel"}],
        },
    ).json()

    # when
    finalized = sandbox.post("billing", f"/invoices/{draft['id']}/finalize")
    paid = sandbox.post("billing", f"/invoices/{draft['id']}/pay", {"paid_out_of_band": True})
    paid_again = sandbox.post("billing", f"/invoices/{draft['id']}/pay")

    # then
    assert draft["status"] == "draft"
    assert draft["number"] is None
    assert draft["total"] == 152500
    assert finalized.json()["status"] == "open"
    assert finalized.json()["number"] == f"{customer['invoice_prefix']}-0001"
    assert paid.json()["status"] == "paid"
    assert paid.json()["amount_paid"] == 152500
    assert paid.json()["amount_remaining"] == 0
    assert paid_again.status_code == 400
    assert paid_again.json()["error"]["code"] == "invoice_unexpected_state"


def test_subscription_update_and_cancel(sandbox):
    # given
    customer = billing_customer(sandbox)
    price = billing_price(sandbox)
    subscription = sandbox.post(
        "billing",
        "/subscriptions",
        {"customer": customer["id"], "items": [{"price": price["id"], "quantity": 2}]},
    ).json()
    item_id = subscription["items"]["data"][0]["id"]

    # when
    updated = sandbox.post(
        "billing",
        f"/subscriptions/{subscription['id']}",
        {"items": [{"id": item_id, "quantity": 5}], "metadata": {"tandem_contract": "CTR-1"}},
    )
    cancelled = sandbox.call("DELETE", "billing", f"/subscriptions/{subscription['id']}")

    # then
    assert updated.status_code == 200
    assert updated.json()["items"]["data"][0]["quantity"] == 5
    assert updated.json()["metadata"] == {"tandem_contract": "CTR-1"}
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "canceled"
