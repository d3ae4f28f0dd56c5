from __future__ import annotations

from tests.sandbox.helpers import erp_customer, erp_order


def test_customer_create_and_lookup_by_external_id(sandbox):
    # given
    customer = erp_customer(sandbox)

    # when
    by_query = sandbox.get("erp", "/customers", params={"externalId": "ACC-000001"}).json()
    by_eid = sandbox.get("erp", "/customers/eid:ACC-000001")

    # then
    assert customer["internalId"] == "1001"
    assert customer["id"] == "1001"
    assert customer["entityId"] == "CUST1001"
    assert by_query["count"] == 1
    assert by_query["items"] == [customer]
    assert by_eid.json() == customer


def test_customer_upsert_by_external_id_creates_then_updates(sandbox):
    # when
    created = sandbox.call(
        "PUT", "erp", "/customers/eid:ACC-000009", json={"companyName": "Contoso GmbH"}
    )
    updated = sandbox.call("PUT", "erp", "/customers/eid:ACC-000009", json={"email": "a@b.c"})

    # then
    assert created.status_code == 201
    assert updated.status_code == 200
    assert updated.json()["internalId"] == created.json()["internalId"]
    assert updated.json()["companyName"] == "Contoso GmbH"
    assert updated.json()["email"] == "a@b.c"
    assert sandbox.state("erp")["counts"]["customers"] == 1


def test_sales_order_is_created_pending_approval_with_totals(sandbox):
    # given
    erp_customer(sandbox)

    # when
    response = erp_order(sandbox)

    # then
    assert response.status_code == 201
    order = response.json()
    assert order["internalId"] == "5001"
    assert order["tranId"] == "SO10001"
    assert order["orderStatus"] == "pendingApproval"
    assert order["entity"] == {"id": "1001", "refName": "Northwind Traders Ltd"}
    assert order["subsidiary"] == {"id": "2"}
    assert order["total"] == "2000.00"
    assert [line["amount"] for line in order["item"]["items"]] == ["1500.00", "500.00"]


def test_sales_order_with_a_used_external_id_is_refused(sandbox):
    # given
    erp_customer(sandbox)
    erp_order(sandbox)

    # when
    response = erp_order(sandbox)

    # then
    assert response.status_code == 400
    assert response.json() == {
        "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
        "title": "Bad Request",
        "status": 400,
        "o:errorDetails": [
            {
                "detail": "This record already exists: a sales order with externalId "
                "ORD-000001 (internalId 5001).",
                "o:errorCode": "DUP_RCRD",
                "o:errorPath": "externalId",
            }
        ],
    }
    assert sandbox.state("erp")["counts"]["salesorders"] == 1


def test_sales_order_for_an_unknown_customer_is_refused(sandbox):
    # when
    response = erp_order(sandbox)

    # then
    assert response.status_code == 400
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_KEY_OR_REF"


def test_control_approve_moves_the_order_on_and_emits_order_accepted(sandbox, receiver):
    # given
    erp_customer(sandbox)
    erp_order(sandbox)

    # when
    response = sandbox.control("POST", "/erp/approve/5001")

    # then
    assert response.status_code == 200
    order = sandbox.get("erp", "/salesorders", params={"externalId": "ORD-000001"}).json()
    assert order["items"][0]["orderStatus"] == "pendingFulfillment"
    [delivery] = receiver.wait_for(1)
    assert delivery.path == "/webhooks/erp/"
    assert delivery.payload["event_type"] == "order.accepted"
    assert delivery.payload["data"]["order_id"] == "ORD-000001"
    assert delivery.payload["data"]["erp_sales_order_id"] == "5001"
    assert sandbox.control("POST", "/erp/approve/5001").status_code == 409
    assert sandbox.control("POST", "/erp/approve/9999").status_code == 404


def test_sales_order_is_approved_after_the_configured_delay(sandbox, receiver):
    # given
    sandbox.control("POST", "/settings", {"erp_approval_delay_s": 0})
    erp_customer(sandbox)

    # when
    created = erp_order(sandbox).json()
    [delivery] = receiver.wait_for(1)

    # then
    assert created["orderStatus"] == "pendingApproval"
    assert delivery.payload["event_type"] == "order.accepted"
    order = sandbox.get("erp", "/salesorders/eid:ORD-000001").json()
    assert order["orderStatus"] == "pendingFulfillment"


def test_invoice_from_an_approved_order_is_posted(sandbox, receiver):
    # given
    erp_customer(sandbox)
    erp_order(sandbox)
    sandbox.control("POST", "/erp/approve/5001")

    # when
    response = sandbox.post(
        "erp", "/invoices", {"externalId": "INV-000001", "createdFrom": {"id": "5001"}}
    )

    # then
    assert response.status_code == 201
    invoice = response.json()
    assert invoice["tranId"] == "INV10001"
    assert invoice["status"] == "open"
    assert invoice["total"] == "2000.00"
    assert invoice["createdFrom"] == {"id": "5001", "refName": "Sales Order #SO10001"}
    order = sandbox.get("erp", "/salesorders/5001").json()
    assert order["orderStatus"] == "fullyBilled"
    deliveries = receiver.wait_for(2)
    assert [d.payload["event_type"] for d in deliveries] == ["order.accepted", "invoice.posted"]


def test_invoice_from_an_order_pending_approval_is_refused(sandbox):
    # given
    erp_customer(sandbox)
    erp_order(sandbox)

    # when
    response = sandbox.post("erp", "/invoices", {"createdFrom": {"id": "5001"}})

    # then
    assert response.status_code == 400
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_INITIALIZE_REF"
    assert sandbox.state("erp")["counts"]["invoices"] == 0


def test_sales_order_cancel(sandbox):
    # given
    erp_customer(sandbox)
    erp_order(sandbox)

    # when
    response = sandbox.post("erp", "/salesorders/5001/cancel")

    # then
    assert response.status_code == 200
    assert response.json()["orderStatus"] == "cancelled"
    assert sandbox.control("POST", "/erp/approve/5001").status_code == 409
