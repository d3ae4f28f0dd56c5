"""The sandbox's receivables: billing collects in parts, declines a test card, refunds,
credits and voids, announcing each; the ERP takes credit memos, customer payments and refunds
and lets finance reject a sales order."""

from __future__ import annotations

from typing import Any

from tests.sandbox.helpers import billing_customer, billing_price, erp_customer, erp_order


def _open_invoice(sandbox: Any, amount: int = 100000) -> dict[str, Any]:
    customer = billing_customer(sandbox)
    price = billing_price(sandbox, recurring=None, unit_amount=amount)
    draft = sandbox.post(
        "billing",
        "/invoices",
        {
            "customer": customer["id"],
            "currency": "gbp",
            "metadata": {"tandem_order": "ORD-000001"},
            "lines": [{"price": price["id"]}],
        },
    ).json()
    return sandbox.post("billing", f"/invoices/{draft['id']}/finalize").json()


def _events(receiver: Any, count: int) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for delivery in receiver.wait_for(count):
        by_type.setdefault(delivery.payload["event_type"], []).append(delivery.payload["data"])
    return by_type


def test_an_invoice_paid_in_two_parts_announces_each_payment(sandbox, receiver):
    # given
    invoice = _open_invoice(sandbox)
    # when
    part = sandbox.post("billing", f"/invoices/{invoice['id']}/pay", {"amount": 40000})
    too_much = sandbox.post("billing", f"/invoices/{invoice['id']}/pay", {"amount": 70000})
    rest = sandbox.post("billing", f"/invoices/{invoice['id']}/pay")
    # then
    assert (part.json()["status"], part.json()["amount_remaining"]) == ("open", 60000)
    assert too_much.status_code == 400
    assert (rest.json()["status"], rest.json()["amount_paid"]) == ("paid", 100000)
    payments = _events(receiver, 3)["payment.received"]
    assert [(p["external_invoice_id"], p["amount"], p["currency"]) for p in payments] == [
        (invoice["id"], "400.00", "GBP"),
        (invoice["id"], "600.00", "GBP"),
    ]
    assert payments[0]["external_payment_id"] != payments[1]["external_payment_id"]


def test_a_declined_card_is_a_402_and_a_failed_payment_and_the_invoice_stays_open(
    sandbox, receiver
):
    # given
    invoice = _open_invoice(sandbox)
    # when
    declined = sandbox.post(
        "billing", f"/invoices/{invoice['id']}/pay", {"payment_method": "pm_card_chargeDeclined"}
    )
    # then
    assert declined.status_code == 402
    assert declined.json()["error"]["code"] == "card_declined"
    assert sandbox.get("billing", f"/invoices/{invoice['id']}").json()["status"] == "open"
    [failed] = _events(receiver, 2)["payment.failed"]
    assert (failed["external_invoice_id"], failed["amount"], failed["failure_reason"]) == (
        invoice["id"], "1000.00", "Your card was declined.",
    )  # fmt: skip


def test_refunds_never_give_back_more_than_was_paid(sandbox, receiver):
    # given
    invoice = _open_invoice(sandbox)
    paid = sandbox.post("billing", f"/invoices/{invoice['id']}/pay").json()
    # when
    part = sandbox.post("billing", "/refunds", {"charge": paid["charge"], "amount": 30000})
    over = sandbox.post("billing", "/refunds", {"charge": paid["charge"], "amount": 80000})
    rest = sandbox.post("billing", "/refunds", {"charge": paid["charge"]})
    # then
    assert (part.json()["amount"], rest.json()["amount"]) == (30000, 70000)
    assert over.status_code == 400
    refunds = _events(receiver, 4)["payment.refunded"]
    assert [(r["external_payment_id"], r["amount"]) for r in refunds] == [
        (paid["charge"], "300.00"),
        (paid["charge"], "700.00"),
    ]


def test_a_credit_note_lowers_what_is_due_and_a_void_is_announced(sandbox, receiver):
    # given
    credited = _open_invoice(sandbox)
    voided = _open_invoice(sandbox)
    # when
    note = sandbox.post(
        "billing", "/credit_notes", {"invoice": credited["id"], "amount": 25000, "memo": "outage"}
    )
    over = sandbox.post("billing", "/credit_notes", {"invoice": credited["id"], "amount": 80000})
    void = sandbox.post("billing", f"/invoices/{voided['id']}/void")
    # then
    assert note.json()["number"] == f"{credited['number']}-CN-01"
    assert over.status_code == 400
    assert sandbox.get("billing", f"/invoices/{credited['id']}").json()["amount_remaining"] == 75000
    assert void.json()["status"] == "void"
    events = _events(receiver, 4)
    [issued] = events["credit_note.issued"]
    assert (issued["external_invoice_id"], issued["amount"], issued["reason"]) == (
        credited["id"], "250.00", "outage",
    )  # fmt: skip
    assert [v["external_invoice_id"] for v in events["invoice.voided"]] == [voided["id"]]


def test_finance_rejects_a_pending_sales_order_once(sandbox, receiver):
    # given
    customer = erp_customer(sandbox)
    order = erp_order(sandbox, entity={"id": customer["internalId"]}).json()
    # when
    rejected = sandbox.control(
        "POST", f"/erp/reject/{order['internalId']}", {"reason": "credit limit"}
    )
    again = sandbox.control("POST", f"/erp/reject/{order['internalId']}", {"reason": "again"})
    # then
    assert (rejected.status_code, rejected.json()["orderStatus"]) == (200, "rejected")
    assert again.status_code == 409
    [event] = receiver.wait_for(1)
    assert (event.payload["event_type"], event.payload["data"]) == (
        "order.rejected",
        {
            "order_id": "ORD-000001",
            "erp_sales_order_id": order["internalId"],
            "rejected_at": event.payload["data"]["rejected_at"],
            "reason": "credit limit",
        },
    )


def test_erp_payments_and_credits_never_exceed_what_is_due(sandbox):
    # given
    customer = erp_customer(sandbox)
    invoice = sandbox.post(
        "erp",
        "/invoices",
        {
            "externalId": "INV-000001",
            "entity": {"id": customer["internalId"]},
            "item": {"items": [{"item": {"externalId": "SEATS"}, "quantity": "1", "rate": "500"}]},
        },
    ).json()
    pay = {"customer": {"id": customer["internalId"]}, "apply": {"doc": {"id": invoice["id"]}}}
    # when
    paid = sandbox.post(
        "erp", "/customerpayments", {"externalId": "PAY-1", **pay, "payment": "300"}
    )
    over = sandbox.post(
        "erp", "/customerpayments", {"externalId": "PAY-2", **pay, "payment": "300"}
    )
    memo = sandbox.post(
        "erp", "/creditmemos", {"externalId": "CRN-1", "createdFrom": {"id": invoice["id"]},
                                "total": "200"},
    )  # fmt: skip
    refund = sandbox.post(
        "erp", "/customerrefunds", {"externalId": "RFD-1", "customer": pay["customer"],
                                    "total": "400", "apply": {"doc": {"id": paid.json()["id"]}}},
    )  # fmt: skip
    # then
    assert paid.status_code == 201
    assert over.status_code == 400
    assert memo.json()["status"] == "fullyApplied"
    assert refund.status_code == 400
    final = sandbox.get("erp", f"/invoices/{invoice['id']}").json()
    assert (final["amountRemaining"], final["status"]) == ("0.00", "paidInFull")
