"""The invoice page: its payments (a failed one too), credit notes and refunds, with money
shown with its currency and each record's ERP id once posted; for those who may see invoices."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.money import Money
from masterdata.services import records as md_services
from q2c import services
from q2c.models import Invoice
from tests import factories
from tests.console.test_views import signed_in

pytestmark = pytest.mark.django_db


def _gbp(amount: str) -> Money:
    return Money(Decimal(amount), "GBP")


def _invoice_with_everything() -> Invoice:
    actor = factories.actor()
    invoice = factories.invoice(
        number="ABCD-0001",
        lines=[
            services.InvoiceLineInput(
                description="Seats", quantity=Decimal("25"), unit_price=Decimal("48.00")
            )
        ],
    )
    services.invoice_post(invoice=invoice, actor=actor, reason="issued")
    paid = services.payment_record(
        account=invoice.account, amount=_gbp("1000.00"), received_at=timezone.now(),
        actor=actor, reason="paid",
    )  # fmt: skip
    services.payment_apply(payment=paid, invoice=invoice, actor=actor, reason="paid")
    failed = services.payment_record(
        account=invoice.account, amount=_gbp("200.00"), received_at=timezone.now(),
        invoice=invoice, actor=actor, reason="attempt",
    )  # fmt: skip
    services.payment_fail(payment=failed, actor=actor, reason="Your card was declined.")
    services.credit_note_mirror(
        invoice=invoice, amount=_gbp("150.00"), number="ABCD-0001-CN-01",
        issued_at=timezone.now(), credit_reason="outage credit", actor=actor, reason="credited",
    )  # fmt: skip
    refund = services.payment_refund(
        payment=paid, amount=_gbp("250.00"), refunded_at=timezone.now(),
        refund_reason="requested_by_customer", actor=actor, reason="refunded",
    )  # fmt: skip
    md_services.external_id_link(
        record=invoice, system="erp", object_type="receivable_invoice", external_id="8001",
        actor=Actor.system("connector:erp"), reason="posted",
    )  # fmt: skip
    md_services.external_id_link(
        record=refund, system="erp", object_type="customer_refund", external_id="14001",
        actor=Actor.system("connector:erp"), reason="posted",
    )  # fmt: skip
    return invoice


def _rows(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table class="list" id="{table_id}">(.*?)</table>', html, re.S)
    assert table is not None
    body = table.group(1).split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_invoice_page_lists_payments_credit_notes_and_refunds_with_their_money(
    client: Client, django_assert_num_queries: Any
):
    # given
    invoice = _invoice_with_everything()
    signed_in(client, "finance_ops")
    url = reverse("invoice-detail", args=[invoice.enterprise_id])
    client.get(url)  # warm the session and permission caches
    # when
    with django_assert_num_queries(11):
        response = client.get(url)
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "<dt>Total</dt><dd>1,200.00 GBP" in html
    assert "<dt>Open balance</dt><dd>200.00 GBP</dd>" in html
    assert "<dt>In the ERP</dt><dd>8001</dd>" in html
    payments = [[row[2], row[3], row[4], row[5], row[6]] for row in _rows(html, "payments")]
    assert sorted(payments) == [
        ["Applied to an invoice", "1,000.00 GBP", "250.00 GBP", "", "—"],
        ["Failed", "200.00 GBP", "0.00 GBP", "Your card was declined.", "—"],
    ]
    [note] = _rows(html, "credit-notes")
    assert (note[1], note[3], note[4], note[5]) == (
        "ABCD-0001-CN-01", "Issued", "150.00 GBP", "outage credit",
    )  # fmt: skip
    [refund] = _rows(html, "refunds")
    assert (refund[3], refund[4], refund[5]) == ("250.00 GBP", "requested_by_customer", "14001")


def test_the_invoice_page_is_refused_to_who_may_not_see_invoices_and_404s_when_unknown(
    client: Client,
):
    # given
    invoice = _invoice_with_everything()
    signed_in(client, "sales_ops")
    other = Client()
    signed_in(other, "auditor", username="bob")
    # when
    refused = client.get(reverse("invoice-detail", args=[invoice.enterprise_id]))
    missing = other.get(reverse("invoice-detail", args=["INV-999999"]))
    # then
    assert refused.status_code == 403
    assert missing.status_code == 404
