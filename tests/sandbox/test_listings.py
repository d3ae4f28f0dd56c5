"""The listings reconciliation reads page by page, and the ERP line edit behind Tandem's back."""

from __future__ import annotations

from tests.sandbox.helpers import billing_customer, erp_customer, erp_order


def _invoice(sandbox, customer: str, amount: int) -> str:
    created = sandbox.post(
        "billing", "/invoices",
        {"customer": customer, "currency": "gbp", "lines": [{"amount": amount}]},
    ).json()  # fmt: skip
    return str(created["id"])


def test_billing_lists_changes_oldest_first_a_page_after_the_cursor(sandbox):
    # given
    customer = billing_customer(sandbox)["id"]
    ids = [_invoice(sandbox, customer, 100 * n) for n in range(1, 4)]
    # when
    first = sandbox.get("billing", "/invoices", params={"updated_since": "0", "limit": "2"})
    rest = sandbox.get(
        "billing", "/invoices",
        params={"updated_since": "0", "limit": "2", "starting_after": ids[1]},
    )  # fmt: skip
    # then
    assert ([i["id"] for i in first.json()["data"]], first.json()["has_more"]) == (ids[:2], True)
    assert ([i["id"] for i in rest.json()["data"]], rest.json()["has_more"]) == (ids[2:], False)


def test_billing_refuses_a_listing_it_cannot_read(sandbox):
    # when
    bad_since = sandbox.get("billing", "/invoices", params={"updated_since": "yesterday"})
    bad_cursor = sandbox.get(
        "billing", "/invoices", params={"updated_since": "0", "starting_after": "in_nope"}
    )
    # then
    assert (bad_since.status_code, bad_cursor.status_code) == (400, 404)


def test_the_erp_pages_with_limit_and_offset(sandbox):
    # given
    erp_customer(sandbox)
    for n in range(3):
        erp_order(sandbox, external_id=f"ORD-00000{n}")
    # when
    page = sandbox.get("erp", "/salesorders", params={"limit": "2", "offset": "2"}).json()
    # then
    assert ([o["externalId"] for o in page["items"]], page["hasMore"], page["totalResults"]) == (
        ["ORD-000002"], False, 3,
    )  # fmt: skip


def test_an_erp_line_edited_behind_tandems_back_changes_the_totals_and_sends_nothing(sandbox):
    # given
    erp_customer(sandbox)
    order = erp_order(sandbox).json()
    events_before = sandbox.control("GET", "/webhooks").json()
    # when
    edited = sandbox.control(
        "POST", f"/erp/salesorders/{order['internalId']}/lines/1", {"quantity": "3"}
    )
    missing = sandbox.control("POST", f"/erp/salesorders/{order['internalId']}/lines/9", {})
    bad = sandbox.control(
        "POST", f"/erp/salesorders/{order['internalId']}/lines/1", {"quantity": "-1"}
    )
    # then
    line = edited.json()["item"]["items"][0]
    assert (line["quantity"], line["amount"], edited.json()["total"]) == ("3", "4500.00", "5000.00")
    assert (missing.status_code, bad.status_code) == (404, 400)
    assert sandbox.control("GET", "/webhooks").json() == events_before


def test_an_invoice_posted_twice_in_billing_is_a_copy_under_a_new_id_and_number(sandbox):
    # given a posted invoice
    customer = billing_customer(sandbox)["id"]
    original = _invoice(sandbox, customer, 1200)
    posted = sandbox.post("billing", f"/invoices/{original}/finalize").json()
    events_before = sandbox.control("GET", "/webhooks").json()["count"]
    # when
    response = sandbox.control("POST", f"/billing/invoices/{original}/duplicate")
    # then
    assert response.status_code == 201, response.text
    copy = response.json()
    assert copy["id"] != original and copy["number"] != posted["number"]
    assert (copy["total"], copy["status"], copy["customer"]) == (1200, "open", customer)
    listed = sandbox.get("billing", "/invoices", params={"updated_since": "0"}).json()["data"]
    assert {invoice["id"] for invoice in listed} == {original, copy["id"]}
    assert sandbox.control("GET", "/webhooks").json()["count"] == events_before


def test_a_draft_or_unknown_invoice_is_not_duplicated(sandbox):
    # given
    draft = _invoice(sandbox, billing_customer(sandbox)["id"], 500)
    # when
    unknown = sandbox.control("POST", "/billing/invoices/in_nope/duplicate")
    drafted = sandbox.control("POST", f"/billing/invoices/{draft}/duplicate")
    # then
    assert (unknown.status_code, drafted.status_code) == (404, 409)
    assert sandbox.state("billing")["counts"]["invoices"] == 1


def test_an_invoice_voided_behind_tandems_back_sends_no_event_and_only_an_open_one_is(sandbox):
    # given
    original = _invoice(sandbox, billing_customer(sandbox)["id"], 700)
    draft = _invoice(sandbox, billing_customer(sandbox)["id"], 300)
    sandbox.post("billing", f"/invoices/{original}/finalize")
    events_before = sandbox.control("GET", "/webhooks").json()["count"]
    # when
    voided = sandbox.control("POST", f"/billing/invoices/{original}/void")
    again = sandbox.control("POST", f"/billing/invoices/{original}/void")
    drafted = sandbox.control("POST", f"/billing/invoices/{draft}/void")
    # then
    assert (voided.status_code, voided.json()["status"]) == (200, "void")
    assert (again.status_code, drafted.status_code) == (409, 409)
    assert sandbox.control("GET", "/webhooks").json()["count"] == events_before
