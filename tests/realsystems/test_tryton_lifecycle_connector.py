"""What the contract lifecycle needs from the Tryton connector, against a real ``trytond`` 8.2
on loopback: sales booked in the legal entity's company, returns on the original sale,
credit notes, payments and refunds in the receivables, customer updates, the polling of
renewals, credit notes and refunds, and no second record when an answer is lost on the way
back (a proxy that drops Tryton's answer after Tryton committed).

Every assertion about Tryton reads Tryton's own records back over JSON-RPC.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import Party, RemoteLine, RemoteRecord
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.connectors.tryton.session import sessions_forget
from orchestration.events.polling import poll_cursor_run
from orchestration.models import InboundEvent
from tests.realsystems.lossy_proxy import LossyProxy, rpc_method_is
from tests.realsystems.test_tryton_connector import customer, party, sale_lines, unique
from tests.realsystems.tryton_server import TrytonServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEMO_COMPANY = 2  # the saved database's "Tandem Demo Ltd", the test legal entity's subsidiary


def confirmed_sale(erp: TrytonErp, customer_id: str, *, subsidiary: str = "") -> RemoteRecord:
    sale = erp.sales_order_create(
        reference=unique("ORD"), customer_id=customer_id, currency="GBP", lines=sale_lines(),
        order_date=dt.date.today(), idempotency_key=unique("key"), subsidiary=subsidiary,
    )  # fmt: skip
    return erp.sales_order_confirm(sales_order_id=sale.id)


def posted_invoice(erp: TrytonErp, *, subsidiary: str = "2") -> tuple[str, RemoteRecord]:
    """A confirmed sale's one-time line invoiced and posted: 1500.00 + 20% VAT = 1800.00."""
    customer_id = customer(erp)
    sale = confirmed_sale(erp, customer_id, subsidiary=subsidiary)
    invoice = erp.invoice_create(
        reference=unique("ORD") + "-OT", customer_id=customer_id, sales_order_id=sale.id,
        currency="GBP", lines=sale_lines()[1:], idempotency_key=unique("key"),
    )  # fmt: skip
    return customer_id, invoice


def invoice_row(erp: TrytonErp, invoice_id: str) -> dict[str, Any]:
    return erp.rpc(
        "test_read", "model.account.invoice.read",
        [[int(invoice_id)], ["state", "amount_to_pay", "total_amount", "company", "payment_lines"]],
    )[0]  # fmt: skip


def count(erp: TrytonErp, model: str, domain: list[Any]) -> int:
    return len(erp.search_read(model, domain, ["id"], operation="test_count"))


def polled(erp: TrytonErp, stream: str, capture: Any) -> list[dict[str, Any]]:
    """The canonical events one poll of ``stream`` stored (their data by event id)."""
    before = set(InboundEvent.objects.values_list("pk", flat=True))
    with capture():
        result = poll_cursor_run(system="erp", stream=stream, connector=erp)
    assert result.error == ""
    bodies = [
        json.loads(event.raw_body)
        for event in InboundEvent.objects.exclude(pk__in=before).order_by("pk")
    ]
    return [
        {"event_id": body["event_id"], "type": body["event_type"], **body["data"]}
        for body in bodies
    ]


# --- companies ---------------------------------------------------------------------------------


def test_a_sale_is_booked_in_the_company_of_the_legal_entitys_erp_subsidiary(
    tryton_erp: TrytonErp,
):
    # given
    customer_id = customer(tryton_erp)
    # when
    in_demo = confirmed_sale(tryton_erp, customer_id, subsidiary="2")
    by_code = confirmed_sale(tryton_erp, customer_id, subsidiary="TANDEM-DEMO")
    default = confirmed_sale(tryton_erp, customer_id)
    # then: Tryton's own sales, and the taxes of each company
    rows = tryton_erp.rpc(
        "test_read", "model.sale.sale.read",
        [[int(in_demo.id), int(by_code.id), int(default.id)],
         ["company", "tax_amount", "lines.taxes"]],
    )  # fmt: skip
    assert [row["company"] for row in rows] == [DEMO_COMPANY, DEMO_COMPANY, 1]
    assert [row["tax_amount"] for row in rows] == [Decimal("480.00")] * 3
    taxes = [
        tryton_erp.rpc(
            "test_read", "model.account.tax.read", [row["lines."][0]["taxes"], ["company"]]
        )[0]["company"]
        for row in rows
    ]
    assert taxes == [DEMO_COMPANY, DEMO_COMPANY, 1]


def test_a_subsidiary_tryton_has_no_company_for_is_refused(tryton_erp: TrytonErp):
    # given
    customer_id = customer(tryton_erp)
    reference = unique("ORD")
    # when
    with pytest.raises(PermanentError) as refused:
        tryton_erp.sales_order_create(
            reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines(),
            order_date=dt.date.today(), idempotency_key="k", subsidiary="99",
        )  # fmt: skip
    # then
    assert refused.value.kind == "not_found"
    assert "'99'" in refused.value.message
    assert count(tryton_erp, "sale.sale", [["reference", "=", reference]]) == 0


# --- returns and renewals ----------------------------------------------------------------------


def test_a_return_is_a_sale_of_negative_quantities_on_the_original_sale_in_its_company(
    tryton_erp: TrytonErp, django_capture_on_commit_callbacks: Any, settings: Any
):
    # given: the original sale, booked in the demo company and accepted
    customer_id = customer(tryton_erp)
    original = confirmed_sale(tryton_erp, customer_id, subsidiary="2")
    reference = f"CTR-{unique('X')[-6:]}:v2"
    # when
    returned = tryton_erp.return_create(
        reference=reference, customer_id=customer_id, currency="GBP",
        lines=[RemoteLine(product_ref="ITEM-PLAT-PRO", quantity=Decimal("5"),
                          unit_price=Decimal("36.00"), description="Unused period")],
        order_date=dt.date.today(), idempotency_key="k-return",
    )  # fmt: skip
    # then: Tryton holds a return on the original sale
    assert tryton_erp.return_find(reference=reference) == returned
    row = tryton_erp.rpc(
        "test_read", "model.sale.sale.read",
        [[int(returned.id)], ["origin", "company", "state", "total_amount", "lines.quantity"]],
    )[0]  # fmt: skip
    assert (row["origin"], row["company"], row["state"]) == (
        f"sale.sale,{original.id}", DEMO_COMPANY, "quotation",
    )  # fmt: skip
    assert [line["quantity"] for line in row["lines."]] == [-5.0]
    assert row["total_amount"] == Decimal("-216.00")  # 5 x 36.00 + 20% VAT, given back
    # and finance accepting the return is no order acceptance
    settings.TRYTON_POLL_LOOKBACK_SECONDS = 0
    tryton_erp.sales_order_confirm(sales_order_id=returned.id)
    events = polled(tryton_erp, "sales", django_capture_on_commit_callbacks)
    assert f"tryton-sale-{returned.id}-accepted" not in {e["event_id"] for e in events}


def test_a_renewal_sale_of_a_contract_version_is_polled_as_its_acceptance(
    tryton_erp: TrytonErp, django_capture_on_commit_callbacks: Any
):
    # given: the renewal's sale carries the contract version's reference
    customer_id = customer(tryton_erp)
    reference = f"CTR-{unique('X')[-6:]}:v3"
    sale = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines()[:1],
        order_date=dt.date.today(), idempotency_key="k-renewal", subsidiary="2",
    )  # fmt: skip
    # when: finance confirms it and the connector polls
    tryton_erp.sales_order_confirm(sales_order_id=sale.id)
    events = polled(tryton_erp, "sales", django_capture_on_commit_callbacks)
    # then
    accepted = [e for e in events if e["event_id"] == f"tryton-sale-{sale.id}-accepted"]
    assert [(e["type"], e["order_id"], e["erp_sales_order_id"]) for e in accepted] == [
        ("order.accepted", reference, sale.id)
    ]


# --- receivables -------------------------------------------------------------------------------


def test_a_credit_memo_is_a_posted_credit_note_on_the_invoice_lowering_what_is_due(
    tryton_erp: TrytonErp,
):
    # given
    _, invoice = posted_invoice(tryton_erp)
    reference = unique("CRN")
    # when
    credit = tryton_erp.credit_memo_create(
        reference=reference, invoice_id=invoice.id, currency="GBP", amount=Decimal("300.00"),
        memo="Unused period", idempotency_key="k-credit",
    )  # fmt: skip
    # then
    assert tryton_erp.credit_memo_find(reference=reference) == credit
    assert (credit.status, credit.data["total"], credit.data["amount"]) == (
        "posted", "-300.00", "300.00",
    )  # fmt: skip
    assert (credit.data["invoice_id"], credit.data["company_id"]) == (invoice.id, "2")
    after = invoice_row(tryton_erp, invoice.id)
    assert (after["state"], after["amount_to_pay"]) == ("posted", Decimal("1500.00"))


def test_a_credit_memo_above_the_invoice_total_or_in_another_currency_is_refused(
    tryton_erp: TrytonErp,
):
    # given
    _, invoice = posted_invoice(tryton_erp)
    reference = unique("CRN")
    # when
    with pytest.raises(PermanentError) as too_much:
        tryton_erp.credit_memo_create(
            reference=reference, invoice_id=invoice.id, currency="GBP",
            amount=Decimal("1800.01"), memo="", idempotency_key="k1",
        )  # fmt: skip
    with pytest.raises(PermanentError) as wrong_currency:
        tryton_erp.credit_memo_create(
            reference=reference, invoice_id=invoice.id, currency="USD",
            amount=Decimal("10.00"), memo="", idempotency_key="k2",
        )  # fmt: skip
    # then
    assert (too_much.value.kind, wrong_currency.value.kind) == ("validation", "validation")
    assert "is in GBP, not USD" in wrong_currency.value.message
    assert count(tryton_erp, "account.invoice", [["reference", "=", reference]]) == 0
    assert invoice_row(tryton_erp, invoice.id)["amount_to_pay"] == Decimal("1800.00")


def test_payments_are_applied_to_the_invoice_until_it_is_paid_and_never_beyond(
    tryton_erp: TrytonErp,
):
    # given
    customer_id, invoice = posted_invoice(tryton_erp)
    first, second, third = unique("PAY"), unique("PAY"), unique("PAY")
    # when: a part, then the rest
    part = tryton_erp.payment_create(
        reference=first, customer_id=customer_id, invoice_id=invoice.id, currency="GBP",
        amount=Decimal("800.00"), received_on=dt.date.today(), idempotency_key="k1",
    )  # fmt: skip
    after_part = invoice_row(tryton_erp, invoice.id)
    rest = tryton_erp.payment_create(
        reference=second, customer_id=customer_id, invoice_id=invoice.id, currency="GBP",
        amount=Decimal("1000.00"), received_on=dt.date.today(), idempotency_key="k2",
    )  # fmt: skip
    # then
    assert tryton_erp.payment_find(reference=first) == part
    assert (part.status, part.data["amount"], part.data["invoice_id"]) == (
        "posted", "800.00", invoice.id,
    )  # fmt: skip
    assert (after_part["state"], after_part["amount_to_pay"]) == ("posted", Decimal("1000.00"))
    assert rest.data["amount"] == "1000.00"
    assert invoice_row(tryton_erp, invoice.id)["state"] == "paid"
    # and a payment on the paid invoice is refused, and leaves no move
    with pytest.raises(PermanentError) as refused:
        tryton_erp.payment_create(
            reference=third, customer_id=customer_id, invoice_id=invoice.id, currency="GBP",
            amount=Decimal("1.00"), received_on=dt.date.today(), idempotency_key="k3",
        )  # fmt: skip
    assert refused.value.kind == "validation"
    assert tryton_erp.payment_find(reference=third) is None


def test_a_refund_gives_back_at_most_what_the_payment_brought(tryton_erp: TrytonErp):
    # given: 1800.00 paid
    customer_id, invoice = posted_invoice(tryton_erp)
    payment = tryton_erp.payment_create(
        reference=unique("PAY"), customer_id=customer_id, invoice_id=invoice.id,
        currency="GBP", amount=Decimal("1800.00"), received_on=dt.date.today(),
        idempotency_key="k1",
    )  # fmt: skip
    reference = unique("RFD")
    # when
    refund = tryton_erp.refund_create(
        reference=reference, customer_id=customer_id, payment_id=payment.id, currency="GBP",
        amount=Decimal("1000.00"), idempotency_key="k2",
    )  # fmt: skip
    # then
    assert tryton_erp.refund_find(reference=reference) == refund
    assert (refund.status, refund.data["amount"], refund.data["payment_id"]) == (
        "posted", "1000.00", payment.id,
    )  # fmt: skip
    lines = tryton_erp.search_read(
        "account.move.line", [["move", "=", int(refund.id)]],
        ["debit", "credit", "party", "account.code"], operation="test_read",
        order=[["debit", "DESC"]],
    )  # fmt: skip
    assert [(row["debit"], row["credit"], row["party"]) for row in lines] == [
        (Decimal("1000.00"), Decimal("0"), int(customer_id)),
        (Decimal("0"), Decimal("1000.00"), None),
    ]
    # and more than is left of the payment is refused
    with pytest.raises(PermanentError) as refused:
        tryton_erp.refund_create(
            reference=unique("RFD"), customer_id=customer_id, payment_id=payment.id,
            currency="GBP", amount=Decimal("800.01"), idempotency_key="k3",
        )  # fmt: skip
    assert "800.00 of it is left to refund" in refused.value.message


def test_credit_notes_and_refunds_made_in_tryton_are_polled_back(
    tryton_erp: TrytonErp, django_capture_on_commit_callbacks: Any, settings: Any
):
    # given: finance credits an invoice (Tryton's Credit wizard) and refunds a payment in
    # Tryton; Tandem's own credit memo on the same invoice is not read back
    settings.TRYTON_POLL_LOOKBACK_SECONDS = 0
    customer_id, invoice = posted_invoice(tryton_erp)
    tryton_erp.credit_memo_create(
        reference=unique("CRN"), invoice_id=invoice.id, currency="GBP",
        amount=Decimal("100.00"), memo="ours", idempotency_key=unique("key"),
    )  # fmt: skip
    credited = tryton_credit_in_full(tryton_erp, int(invoice.id))
    _, paid = posted_invoice(tryton_erp)
    payment = tryton_erp.payment_create(
        reference=unique("PAY"), customer_id=customer_id, invoice_id=paid.id, currency="GBP",
        amount=Decimal("1800.00"), received_on=dt.date.today(), idempotency_key=unique("key"),
    )  # fmt: skip
    refund = tryton_erp.refund_create(
        reference="returned by finance", customer_id=customer_id, payment_id=payment.id,
        currency="GBP", amount=Decimal("50.00"), idempotency_key=unique("key"),
    )  # fmt: skip
    # when
    notes = polled(tryton_erp, "credit_notes", django_capture_on_commit_callbacks)
    refunds = polled(tryton_erp, "refunds", django_capture_on_commit_callbacks)
    # then
    ours = [e for e in notes if e["external_invoice_id"] == invoice.id]
    assert [
        (e["type"], e["external_credit_note_id"], e["amount"], e["currency"]) for e in ours
    ] == [("credit_note.issued", str(credited), "1800.00", "GBP")]
    mine = [e for e in refunds if e["external_payment_id"] == payment.id]
    assert [(e["type"], e["external_refund_id"], e["amount"], e["currency"]) for e in mine] == [
        ("payment.refunded", refund.id, "50.00", "GBP")
    ]


def tryton_credit_in_full(erp: TrytonErp, invoice_id: int) -> int:
    """Credit an invoice in Tryton as finance does (the Credit wizard), and post the credit
    note; returns its id."""
    context = {"active_model": "account.invoice", "active_id": invoice_id,
               "active_ids": [invoice_id]}  # fmt: skip
    with erp.in_company(DEMO_COMPANY):
        session_id, start, _ = erp.rpc("test_credit", "wizard.account.invoice.credit.create", [])
        view = erp.rpc("test_credit", "wizard.account.invoice.credit.execute",
                       [session_id, {}, start], context=context)  # fmt: skip
        form = {**view["view"]["defaults"], "with_refund": False,
                "invoice_date": dt.date.today()}  # fmt: skip
        erp.rpc("test_credit", "wizard.account.invoice.credit.execute",
                [session_id, {"start": form}, "credit"], context=context)  # fmt: skip
        erp.rpc("test_credit", "wizard.account.invoice.credit.delete", [session_id])
        line_ids = erp.rpc("test_read", "model.account.invoice.read",
                           [[invoice_id], ["lines"]])[0]["lines"]  # fmt: skip
        note = erp.search_read(
            "account.invoice",
            [["lines.origin", "=", f"account.invoice.line,{line_ids[0]}"],
             ["state", "=", "draft"]],
            ["id"], operation="test_read",
        )[0]["id"]  # fmt: skip
        erp.button("account.invoice", "post", [int(note)])
    return int(note)


# --- customers ---------------------------------------------------------------------------------


def test_a_customer_update_is_written_to_the_party_once(tryton_erp: TrytonErp):
    # given
    reference = unique("ACC")
    created = tryton_erp.customer_create(party=party(reference), idempotency_key="k0")
    changed = Party(
        reference=reference, name="Renamed Ltd", country="GB", currency="GBP",
        email="billing@renamed.example", tax_id="GB123456789", address_line1="2 Low Road",
        city="Leeds", postcode="LS1 1AA",
    )  # fmt: skip
    # when
    first = tryton_erp.customer_update(customer_id=created.id, party=changed, idempotency_key="k1")
    again = tryton_erp.customer_update(customer_id=created.id, party=changed, idempotency_key="k2")
    # then
    assert first.data["updated"] == ["addresses", "contact_mechanisms", "identifiers", "name"]
    assert again.data["updated"] == []
    row = tryton_erp.rpc(
        "test_read", "model.party.party.read",
        [[int(created.id)], ["name", "addresses", "contact_mechanisms.value",
                             "identifiers.code"]],
    )[0]  # fmt: skip
    address = tryton_erp.rpc(
        "test_read", "model.party.address.read",
        [row["addresses"], ["street", "city", "postal_code"]],
    )  # fmt: skip
    assert row["name"] == "Renamed Ltd"
    assert [(a["street"], a["city"], a["postal_code"]) for a in address] == [
        ("2 Low Road", "Leeds", "LS1 1AA")
    ]
    assert [c["value"] for c in row["contact_mechanisms."]] == ["billing@renamed.example"]
    assert [i["code"] for i in row["identifiers."]] == [reference, "GB123456789"]


def test_an_update_of_an_unknown_party_is_refused(tryton_erp: TrytonErp):
    with pytest.raises(PermanentError) as refused:
        tryton_erp.customer_update(
            customer_id="999999", party=party(unique("ACC")), idempotency_key="k"
        )
    assert refused.value.kind == "not_found"


# --- lost answers: one record in Tryton, not two ----------------------------------------------


@pytest.fixture
def lossy_tryton(
    tryton_server: TrytonServer, tryton_erp: TrytonErp, settings: Any
) -> Iterator[tuple[TrytonErp, LossyProxy]]:
    """The connector reaching Tryton through a proxy that drops answers when told to."""
    proxy = LossyProxy(upstream=tryton_server.url).start()
    connectors = {**settings.TANDEM_CONNECTORS}
    connectors["erp"] = {
        **connectors["erp"],
        "base_url": tryton_server.database_url.replace(tryton_server.url, proxy.url),
    }
    settings.TANDEM_CONNECTORS = connectors
    settings.TRYTON_SETTLE_SECONDS = 0  # the find comes first, so nothing waits
    sessions_forget()
    yield TrytonErp(), proxy
    proxy.stop()
    sessions_forget()


def wizard_step(state: str) -> Callable[[str, str, bytes], bool]:
    """Matches the Pay wizard's ``execute`` of ``state`` (the step that pays)."""
    is_execute = rpc_method_is("wizard.account.invoice.pay.execute")

    def matches(method: str, path: str, body: bytes) -> bool:
        return is_execute(method, path, body) and json.loads(body)["params"][2] == state

    return matches


def step(find: Callable[[], RemoteRecord | None], create: Callable[[], RemoteRecord]) -> Any:
    """What a workflow step does: find by reference first, create only when nothing is found;
    a lost answer is a retryable error and the step runs again."""
    try:
        return find() or create()
    except RetryableError:
        return find() or create()


def test_a_lost_answer_makes_no_second_return(lossy_tryton: tuple[TrytonErp, LossyProxy]):
    # given
    erp, proxy = lossy_tryton
    customer_id = customer(erp)
    confirmed_sale(erp, customer_id, subsidiary="2")
    reference = f"ORD-{unique('X')[-6:]}:return"
    proxy.lose_answers(rpc_method_is("model.sale.sale.create"))
    # when
    returned = step(
        lambda: erp.return_find(reference=reference),
        lambda: erp.return_create(
            reference=reference, customer_id=customer_id, currency="GBP",
            lines=sale_lines()[:1], order_date=dt.date.today(), idempotency_key="k",
        ),
    )  # fmt: skip
    # then
    assert proxy.dropped == ["POST /tandem/rpc/"]
    assert returned.status == "quotation"  # the lost create's draft, quoted when found
    assert count(erp, "sale.sale", [["reference", "=", reference]]) == 1


def test_a_lost_answer_makes_no_second_credit_note(lossy_tryton: tuple[TrytonErp, LossyProxy]):
    # given
    erp, proxy = lossy_tryton
    _, invoice = posted_invoice(erp)
    reference = unique("CRN")
    proxy.lose_answers(rpc_method_is("model.account.invoice.create"))
    # when
    credit = step(
        lambda: erp.credit_memo_find(reference=reference),
        lambda: erp.credit_memo_create(
            reference=reference, invoice_id=invoice.id, currency="GBP",
            amount=Decimal("300.00"), memo="", idempotency_key="k",
        ),
    )  # fmt: skip
    # then: the draft the lost create left is posted and applied when found, once
    assert proxy.dropped == ["POST /tandem/rpc/"]
    assert (credit.status, credit.data["amount"]) == ("posted", "300.00")
    assert count(erp, "account.invoice", [["reference", "=", reference]]) == 1
    assert invoice_row(erp, invoice.id)["amount_to_pay"] == Decimal("1500.00")


def test_a_lost_answer_makes_no_second_payment(lossy_tryton: tuple[TrytonErp, LossyProxy]):
    # given
    erp, proxy = lossy_tryton
    customer_id, invoice = posted_invoice(erp)
    reference = unique("PAY")
    proxy.lose_answers(wizard_step("choice"))
    # when
    payment = step(
        lambda: erp.payment_find(reference=reference),
        lambda: erp.payment_create(
            reference=reference, customer_id=customer_id, invoice_id=invoice.id,
            currency="GBP", amount=Decimal("1800.00"), received_on=dt.date.today(),
            idempotency_key="k",
        ),
    )  # fmt: skip
    # then
    assert proxy.dropped == ["POST /tandem/rpc/"]
    assert payment.data["amount"] == "1800.00"
    assert count(erp, "account.move", [["description", "=", reference]]) == 1
    assert invoice_row(erp, invoice.id)["state"] == "paid"


def test_a_lost_answer_makes_no_second_refund(lossy_tryton: tuple[TrytonErp, LossyProxy]):
    # given
    erp, proxy = lossy_tryton
    customer_id, invoice = posted_invoice(erp)
    payment = erp.payment_create(
        reference=unique("PAY"), customer_id=customer_id, invoice_id=invoice.id,
        currency="GBP", amount=Decimal("1800.00"), received_on=dt.date.today(),
        idempotency_key="k1",
    )  # fmt: skip
    reference = unique("RFD")
    proxy.lose_answers(rpc_method_is("model.account.move.create"))
    # when
    refund = step(
        lambda: erp.refund_find(reference=reference),
        lambda: erp.refund_create(
            reference=reference, customer_id=customer_id, payment_id=payment.id,
            currency="GBP", amount=Decimal("200.00"), idempotency_key="k2",
        ),
    )  # fmt: skip
    # then: the draft move the lost create left is posted when found, once
    assert proxy.dropped == ["POST /tandem/rpc/"]
    assert (refund.status, refund.data["amount"]) == ("posted", "200.00")
    assert count(erp, "account.move", [["description", "=", reference]]) == 1


def test_a_lost_answer_to_a_customer_update_writes_nothing_twice(
    lossy_tryton: tuple[TrytonErp, LossyProxy],
):
    # given
    erp, proxy = lossy_tryton
    reference = unique("ACC")
    created = erp.customer_create(party=party(reference), idempotency_key="k0")
    changed = Party(
        reference=reference, name="Renamed Ltd", country="GB", currency="GBP",
        email="billing@renamed.example",
    )  # fmt: skip
    proxy.lose_answers(rpc_method_is("model.party.party.write"))
    # when: the write's answer is lost, and the step runs again
    with pytest.raises(RetryableError):
        erp.customer_update(customer_id=created.id, party=changed, idempotency_key="k1")
    again = erp.customer_update(customer_id=created.id, party=changed, idempotency_key="k1")
    # then: the first write took; the second finds nothing to write
    assert proxy.dropped == ["POST /tandem/rpc/"]
    assert again.data["updated"] == []
    assert count(erp, "party.contact_mechanism", [["party", "=", int(created.id)]]) == 1
