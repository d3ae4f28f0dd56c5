"""The Tryton ERP connector against a real ``trytond`` 8.2 on loopback (tests/realsystems).

Every assertion about Tryton reads Tryton's own records back over JSON-RPC; nothing here
stands in for the server.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from orchestration.connectors import transport
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import Party, RemoteLine
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.connectors.tryton.session import sessions_forget
from orchestration.events.polling import poll_cursor_run
from orchestration.models import InboundEvent, OutboundCall, PollCursor
from tests.realsystems.helpers import tryton_pay_in_full
from tests.realsystems.lossy_proxy import LossyProxy, rpc_method_is
from tests.realsystems.tryton_server import TrytonServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

_numbers = itertools.count(int(dt.datetime.now().strftime("%H%M%S")) * 100)


def unique(prefix: str) -> str:
    """A reference no earlier test in this server's life has used (the server is shared)."""
    return f"{prefix}-{next(_numbers):09d}"


def party(reference: str, **fields: Any) -> Party:
    return Party(reference=reference, name=f"Customer {reference} Ltd", country="GB",
                 currency="GBP", address_line1="1 High Street", city="London",
                 postcode="EC1A 1BB", **fields)  # fmt: skip


def sale_lines() -> list[RemoteLine]:
    return [
        RemoteLine(product_ref="ITEM-PLAT-PRO", quantity=Decimal("25"),
                   unit_price=Decimal("36.00"), description="Platform Pro seats"),
        RemoteLine(product_ref="ITEM-ONBOARD", quantity=Decimal("1"),
                   unit_price=Decimal("1500.00"), description="Onboarding"),
    ]  # fmt: skip


def customer(erp: TrytonErp) -> str:
    return erp.customer_create(party=party(unique("ACC")), idempotency_key=unique("key")).id


def sales_with_reference(erp: TrytonErp, reference: str) -> list[dict[str, Any]]:
    return erp.search_read("sale.sale", [["reference", "=", reference]], ["id", "state"],
                           operation="test_count")  # fmt: skip


def test_a_customer_becomes_a_party_with_tandems_and_the_crms_ids(tryton_erp: TrytonErp):
    # given
    reference = unique("ACC")
    # when
    created = tryton_erp.customer_create(
        party=party(reference, crm_id="001Dn00000CRM42"), idempotency_key="k1"
    )
    # then
    found = tryton_erp.customer_find(reference=reference)
    assert found == created
    assert (found.status, found.data["name"]) == ("active", f"Customer {reference} Ltd")
    identifiers = tryton_erp.search_read(
        "party.identifier", [["party", "=", int(created.id)]], ["type", "code"],
        operation="test_read", order=[["id", "ASC"]],
    )  # fmt: skip
    assert [(row["type"], row["code"]) for row in identifiers] == [
        (None, reference), (None, "001Dn00000CRM42"),
    ]  # fmt: skip
    assert tryton_erp.customer_find(reference=unique("ACC")) is None


def test_a_customers_party_code_is_its_tandem_id_so_tryton_refuses_a_second_one(
    tryton_erp: TrytonErp,
):
    # given
    reference = unique("ACC")
    created = tryton_erp.customer_create(party=party(reference), idempotency_key="k1")
    # when: the same customer is created again (a create racing one still in flight)
    with pytest.raises(RetryableError) as second:
        tryton_erp.customer_create(party=party(reference), idempotency_key="k2")
    # then: a conflict, retried as such; the retry's search finds the one party
    assert second.value.kind == "conflict"
    assert "must be unique" in second.value.message
    parties = tryton_erp.search_read(
        "party.party", [["code", "=", reference]], ["id"], operation="test_read"
    )
    assert [str(row["id"]) for row in parties] == [created.id]
    assert tryton_erp.customer_find(reference=reference) == created


def test_a_mapped_product_code_becomes_one_service_product(tryton_erp: TrytonErp):
    # given
    code = unique("ITEM")
    # when
    first = tryton_erp.product_ensure(code=code, name="Support plan", list_price=Decimal("99"))
    again = tryton_erp.product_ensure(code=code, name="Support plan", list_price=Decimal("99"))
    # then
    assert first == again
    rows = tryton_erp.search_read(
        "product.product", [["code", "=", code]],
        ["template.type", "template.salable", "template.list_price"],
        operation="test_read",
    )  # fmt: skip
    assert len(rows) == 1
    assert (rows[0]["template."]["type"], rows[0]["template."]["salable"]) == ("service", True)
    assert rows[0]["template."]["list_price"] == Decimal("99")
    assert len(again["customer_taxes_used"]) == 1  # the accounting category's 20% VAT


def test_a_sale_is_created_quoted_and_found_by_its_reference(tryton_erp: TrytonErp):
    # given
    customer_id = customer(tryton_erp)
    reference = unique("ORD")
    # when
    created = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines(),
        order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    # then
    assert created.status == "quotation"
    assert created.number != ""
    assert created.data["external_id"] == reference
    assert (created.data["total"], created.data["tax_total"]) == ("2880.00", "480.00")
    assert tryton_erp.sales_order_find(reference=reference) == created


def test_with_confirmation_on_tandem_confirms_the_sales_it_creates(
    tryton_erp: TrytonErp, settings: Any
):
    # given
    settings.TRYTON_CONFIRM_SALES = True
    reference = unique("ORD")
    # when
    created = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer(tryton_erp), currency="GBP",
        lines=sale_lines(), order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    # then
    assert created.status == "processing"
    assert sales_with_reference(tryton_erp, reference) == [
        {"id": int(created.id), "state": "processing"}
    ]


def test_confirming_a_sale_is_its_acceptance_and_polling_reads_it_back(
    tryton_erp: TrytonErp, django_capture_on_commit_callbacks: Any
):
    # given
    reference = unique("ORD")
    sale = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer(tryton_erp), currency="GBP",
        lines=sale_lines(), order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    before = poll_cursor_run(system="erp", stream="sales", connector=tryton_erp)
    # when
    confirmed = tryton_erp.sales_order_confirm(sales_order_id=sale.id)
    with django_capture_on_commit_callbacks():
        after = poll_cursor_run(system="erp", stream="sales", connector=tryton_erp)
    # then
    assert before.error == after.error == ""
    assert confirmed.status == "processing"
    event = InboundEvent.objects.get(event_id=f"tryton-sale-{sale.id}-accepted")
    assert (event.system, event.event_type, event.correlation_id) == (
        "erp", "order.accepted", reference,
    )  # fmt: skip
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    assert cursor.cursor == after.cursor != before.cursor
    assert poll_cursor_run(system="erp", stream="sales", connector=tryton_erp).stored == 0


def test_a_sale_accepted_behind_the_polling_cursor_is_found_by_the_look_back(
    tryton_erp: TrytonErp, tryton_server: TrytonServer, settings: Any,
    django_capture_on_commit_callbacks: Any,
):  # fmt: skip
    # given: sale A quoted, sale B (made after it) confirmed and polled: the cursor is at B
    def sale(reference: str) -> str:
        return tryton_erp.sales_order_create(
            reference=reference, customer_id=customer(tryton_erp), currency="GBP",
            lines=sale_lines(), order_date=dt.date.today(), idempotency_key=reference,
        ).id  # fmt: skip

    late, early = unique("ORD"), unique("ORD")
    late_id, early_id = sale(late), sale(early)
    tryton_erp.sales_order_confirm(sales_order_id=early_id)
    poll_cursor_run(system="erp", stream="sales", connector=tryton_erp)
    # A is confirmed by a transaction stamped as B's, committing only now: behind the cursor
    tryton_erp.sales_order_confirm(sales_order_id=late_id)
    tryton_server.sql(
        "UPDATE sale_sale SET write_date = (SELECT write_date FROM sale_sale WHERE id = ?) "
        "WHERE id = ?", int(early_id), int(late_id),
    )  # fmt: skip
    settings.TRYTON_POLL_LOOKBACK_SECONDS = 0
    blind = poll_cursor_run(system="erp", stream="sales", connector=tryton_erp)
    assert (blind.stored, blind.recovered) == (0, 0)  # the cursor alone never sees it
    # when
    settings.TRYTON_POLL_LOOKBACK_SECONDS = 300
    with django_capture_on_commit_callbacks():
        result = poll_cursor_run(system="erp", stream="sales", connector=tryton_erp)
    # then
    assert (result.stored, result.recovered, result.error) == (0, 1, "")
    assert result.cursor == blind.cursor  # the cursor did not move back
    event = InboundEvent.objects.get(event_id=f"tryton-sale-{late_id}-accepted")
    assert (event.event_type, event.correlation_id) == ("order.accepted", late)
    assert poll_cursor_run(system="erp", stream="sales", connector=tryton_erp).recovered == 0


def test_one_time_lines_are_invoiced_against_the_sale_posted_and_read_back(
    tryton_erp: TrytonErp, django_capture_on_commit_callbacks: Any
):
    # given
    reference = unique("ORD")
    customer_id = customer(tryton_erp)
    sale = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines(),
        order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    tryton_erp.sales_order_confirm(sales_order_id=sale.id)
    # when
    invoice = tryton_erp.invoice_create(
        reference=f"{reference}-OT", customer_id=customer_id, sales_order_id=sale.id,
        currency="GBP", lines=sale_lines()[1:], idempotency_key="k2",
    )  # fmt: skip
    with django_capture_on_commit_callbacks():
        polled = poll_cursor_run(system="erp", stream="invoices", connector=tryton_erp)
    # then
    assert (invoice.status, invoice.data["total"], invoice.data["tax_total"]) == (
        "posted", "1800.00", "300.00",
    )  # fmt: skip
    assert tryton_erp.invoice_find(reference=f"{reference}-OT") == invoice
    never = unique("CRN")
    assert tryton_erp.invoices_count(references=[f"{reference}-OT", never]) == {
        f"{reference}-OT": 1, never: 0,
    }  # fmt: skip
    sale_invoices = tryton_erp.rpc("test_read", "model.sale.sale.read", [[int(sale.id)],
                                                                         ["invoices"]])  # fmt: skip
    assert sale_invoices[0]["invoices"] == [int(invoice.id)]
    assert polled.error == ""
    event = InboundEvent.objects.get(event_id=f"tryton-invoice-{invoice.id}-posted")
    data = event_data(event)
    assert (data["order_id"], data["total_amount"], data["tax_amount"], data["currency"]) == (
        reference, "1800.00", "300.00", "GBP",
    )  # fmt: skip
    assert [(line["product_code"], line["amount"]) for line in data["lines"]] == [
        ("ITEM-ONBOARD", "1500.00")
    ]


def event_data(event: InboundEvent) -> dict[str, Any]:
    import json

    return dict(json.loads(event.raw_body)["data"])


def test_a_business_error_is_permanent_with_trytons_message(tryton_erp: TrytonErp):
    # given: a quoted sale cannot be deleted in Tryton
    sale = tryton_erp.sales_order_create(
        reference=unique("ORD"), customer_id=customer(tryton_erp), currency="GBP",
        lines=sale_lines()[:1], order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    # when
    with pytest.raises(PermanentError) as raised:
        tryton_erp.rpc("sale_delete", "model.sale.sale.delete", [[int(sale.id)]])
    # then
    assert raised.value.kind == "user_error"
    assert "cancel" in raised.value.message.lower()
    call = OutboundCall.objects.get(operation="sale_delete")
    assert (call.status_code, call.outcome, call.error_message) == (
        200, "permanent", raised.value.message,
    )  # fmt: skip
    assert tryton_erp.sales_order_find(reference=sale.data["external_id"]) is not None


def test_an_expired_session_is_renewed_by_a_fresh_login_and_the_call_retried_once(
    tryton_erp: TrytonErp, tryton_server: TrytonServer
):
    # given
    reference = unique("ACC")
    tryton_erp.customer_create(party=party(reference), idempotency_key="k")
    tryton_server.sql("DELETE FROM ir_session")  # what the session timeout does
    OutboundCall.objects.all().delete()
    # when
    found = tryton_erp.customer_find(reference=reference)
    # then
    assert found is not None
    calls = list(OutboundCall.objects.order_by("pk").values_list("operation", "status_code"))
    assert calls == [
        ("customer_find", 401), ("login", 200), ("preferences", 200), ("customer_find", 200),
    ]  # fmt: skip
    login = OutboundCall.objects.get(operation="login")
    assert "tandem-test-only" not in login.request_body
    assert login.response_body == ""  # it carries the session token


def test_a_wrong_password_is_a_permanent_auth_error(
    tryton_erp: TrytonErp, monkeypatch: pytest.MonkeyPatch
):
    # given
    monkeypatch.setenv("CONNECTOR_ERP_PASSWORD", "not-the-password")
    from orchestration.connectors.tryton.session import sessions_forget

    sessions_forget()
    # when
    with pytest.raises(PermanentError) as raised:
        tryton_erp.customer_find(reference="ACC-000000001")
    # then
    assert (raised.value.status, raised.value.kind) == (401, "auth")


def answers_lost_for(rpc_method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop the answer to every ``rpc_method`` call after the server has handled it (the
    transport edge: the request reaches Tryton, its answer never reaches Tandem)."""
    real_session = transport._session

    def session_losing_answers(system: str) -> requests.Session:
        session = real_session(system)

        class Losing(requests.Session):
            def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
                response = session.request(method, url, **kwargs)
                if (kwargs.get("json") or {}).get("method") == rpc_method:
                    raise requests.ReadTimeout("the answer was lost")
                return response

        return Losing()

    monkeypatch.setattr(transport, "_session", session_losing_answers)


def test_a_lost_answer_after_tryton_created_the_sale_creates_no_second_sale(
    tryton_erp: TrytonErp, monkeypatch: pytest.MonkeyPatch
):
    # given: the answer to the create is dropped on our side after Tryton committed it
    customer_id = customer(tryton_erp)
    reference = unique("ORD")
    with monkeypatch.context() as patch:
        answers_lost_for("model.sale.sale.create", patch)
        with pytest.raises(RetryableError):
            tryton_erp.sales_order_create(
                reference=reference, customer_id=customer_id, currency="GBP",
                lines=sale_lines(), order_date=dt.date.today(), idempotency_key="k",
            )  # fmt: skip
    # when: the step runs again, looking the sale up by reference before creating
    found = tryton_erp.sales_order_find(reference=reference)
    # then
    assert found is not None
    assert found.status == "quotation"  # the lost create's draft, quoted when found
    assert [row["id"] for row in sales_with_reference(tryton_erp, reference)] == [int(found.id)]


@pytest.fixture
def slow_tryton(
    tryton_server: TrytonServer, tryton_erp: TrytonErp, settings: Any
) -> Iterator[tuple[TrytonErp, LossyProxy]]:
    """The connector reaching Tryton through a proxy that can hold requests, with a 1 s read
    timeout: a held create is still running in Tryton when the connector gives up on it."""
    proxy = LossyProxy(upstream=tryton_server.url).start()
    connectors = {**settings.TANDEM_CONNECTORS}
    connectors["erp"] = {
        **connectors["erp"],
        "base_url": tryton_server.database_url.replace(tryton_server.url, proxy.url),
        "read_timeout": 1.0,
    }
    settings.TANDEM_CONNECTORS = connectors
    sessions_forget()
    yield TrytonErp(), proxy
    proxy.stop()


@pytest.mark.parametrize("settle_seconds", [6.0, 0.0], ids=["settling", "without-settling"])
def test_a_create_still_running_in_tryton_when_its_answer_timed_out_is_not_sent_twice(
    slow_tryton: tuple[TrytonErp, LossyProxy], settings: Any, settle_seconds: float
):
    # given: the create reaches Tryton 3 s late, 2 s after the connector stopped waiting
    erp, proxy = slow_tryton
    settings.TRYTON_SETTLE_SECONDS = settle_seconds
    customer_id = customer(erp)
    reference = unique("ORD")
    proxy.hold_requests(rpc_method_is("model.sale.sale.create"), seconds=3)

    def create() -> Any:
        return erp.sales_order_create(
            reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines(),
            order_date=dt.date.today(), idempotency_key="step-key",
        )  # fmt: skip

    with pytest.raises(RetryableError) as timed_out:
        create()
    assert timed_out.value.kind == "timeout"
    # when: the step's retry comes while that create is still running in Tryton
    assert erp.sales_order_find(reference=reference) is None  # nothing committed yet
    if settle_seconds == 0:
        # then, without waiting for it to settle, a second sale is made (what the wait stops)
        create()
        time.sleep(4)
        assert len(sales_with_reference(erp, reference)) == 2
        return
    with pytest.raises(RetryableError) as waiting:
        create()
    # then: it waits for the first create to settle instead of sending a second one
    assert (waiting.value.kind, waiting.value.waiting) == ("outcome_unknown", True)
    assert waiting.value.retry_after is not None and 1 <= waiting.value.retry_after <= 6
    creates = OutboundCall.objects.filter(operation="sales_order_create")
    assert list(creates.values_list("error_class", flat=True)) == ["timeout"]
    # and the retry after the wait finds the first create's sale and quotes it
    time.sleep(waiting.value.retry_after)
    found = erp.sales_order_find(reference=reference)
    assert found is not None and found.status == "quotation"
    assert [row["id"] for row in sales_with_reference(erp, reference)] == [int(found.id)]
    assert proxy.held == ["POST /tandem/rpc/"]


def test_a_lost_answer_after_tryton_created_the_invoice_creates_no_second_invoice(
    tryton_erp: TrytonErp, monkeypatch: pytest.MonkeyPatch
):
    # given
    customer_id = customer(tryton_erp)
    reference = unique("ORD")
    sale = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines(),
        order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    tryton_erp.sales_order_confirm(sales_order_id=sale.id)
    with monkeypatch.context() as patch:
        answers_lost_for("model.account.invoice.create", patch)
        with pytest.raises(RetryableError):
            tryton_erp.invoice_create(
                reference=f"{reference}-OT", customer_id=customer_id, sales_order_id=sale.id,
                currency="GBP", lines=sale_lines()[1:], idempotency_key="k2",
            )  # fmt: skip
    # when
    found = tryton_erp.invoice_find(reference=f"{reference}-OT")
    # then
    assert found is not None
    assert (found.status, found.data["total"]) == ("posted", "1800.00")
    invoices = tryton_erp.search_read(
        "account.invoice", [["reference", "=", f"{reference}-OT"]], ["id"], operation="test_count"
    )
    assert [str(row["id"]) for row in invoices] == [found.id]


def test_an_invoice_paid_in_tryton_is_polled_as_a_payment_of_its_total(
    tryton_erp: TrytonErp, django_capture_on_commit_callbacks: Any
):
    # given
    reference = unique("ORD")
    customer_id = customer(tryton_erp)
    sale = tryton_erp.sales_order_create(
        reference=reference, customer_id=customer_id, currency="GBP", lines=sale_lines(),
        order_date=dt.date.today(), idempotency_key="k",
    )  # fmt: skip
    tryton_erp.sales_order_confirm(sales_order_id=sale.id)
    invoice = tryton_erp.invoice_create(
        reference=f"{reference}-OT", customer_id=customer_id, sales_order_id=sale.id,
        currency="GBP", lines=sale_lines()[1:], idempotency_key="k2",
    )  # fmt: skip
    # when
    tryton_pay_in_full(tryton_erp, int(invoice.id))
    with django_capture_on_commit_callbacks():
        polled = poll_cursor_run(system="erp", stream="payments", connector=tryton_erp)
    # then
    assert polled.error == ""
    assert tryton_erp.invoice_find(reference=f"{reference}-OT").status == "paid"
    event = InboundEvent.objects.get(event_id=f"tryton-invoice-{invoice.id}-paid")
    assert event.event_type == "payment.received"
    assert event_data(event) == {
        "external_payment_id": f"invoice-{invoice.id}-paid",
        "external_invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "amount": "1800.00",
        "currency": "GBP",
        "received_at": event_data(event)["received_at"],
        "method": "other",
    }


def test_sales_are_counted_per_reference_for_a_rehearsals_books(tryton_erp: TrytonErp):
    # given: one sale for the first reference, none for the second
    customer_id = customer(tryton_erp)
    made, never = unique("ORD"), unique("ORD")
    tryton_erp.sales_order_create(
        reference=made, customer_id=customer_id, currency="GBP", lines=sale_lines(),
        order_date=dt.date.today(), idempotency_key=unique("key"),
    )  # fmt: skip
    # when
    counts = tryton_erp.sales_orders_count(references=[made, never])
    # then
    assert counts == {made: 1, never: 0}
