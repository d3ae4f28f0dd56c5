"""The read API of the commercial records (/api/v1/): quotes, orders, contracts, invoices,
credit notes and payments, each a list and a detail built on masterdata's record views.

Deny by default: every view names the permission it needs (``required_permission``), the
same one the console's page for those records checks (core.roles). Lists are cursor-paginated
(no COUNT(*), the same cost on every page); filters are exact matches on indexed columns.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from core.api import choice_values
from masterdata.api import record_views
from q2c import serializers as out
from q2c.models import (
    Contract,
    ContractLine,
    ContractState,
    ContractVersion,
    CreditNote,
    CreditNoteState,
    Invoice,
    InvoiceLine,
    InvoiceState,
    Order,
    OrderLine,
    OrderState,
    Payment,
    PaymentState,
    Quote,
    QuoteLine,
    QuoteState,
)


def lines_prefetch(model: Any) -> Prefetch:
    """A record's lines with their products, in one query for the page."""
    return Prefetch("lines", queryset=model.objects.select_related("product").order_by("line_no"))


QuoteList, QuoteDetail = record_views(
    name="Quote",
    serializer=out.QuoteSerializer,
    permission="q2c.view_quote",
    queryset=lambda: Quote.objects.select_related("account", "legal_entity").prefetch_related(
        lines_prefetch(QuoteLine)
    ),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "cpq_quote_id": "cpq_quote_id",
    },
    choices={"state": choice_values(QuoteState)},
)
OrderList, OrderDetail = record_views(
    name="Order",
    serializer=out.OrderSerializer,
    permission="q2c.view_order",
    queryset=lambda: Order.objects.select_related(
        "quote", "account", "legal_entity"
    ).prefetch_related(lines_prefetch(OrderLine)),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "legal_entity": "legal_entity__code",
        "currency": "currency",
        "cpq_quote_id": "quote__cpq_quote_id",
    },
    choices={"state": choice_values(OrderState)},
)
ContractList, ContractDetail = record_views(
    name="Contract",
    serializer=out.ContractSerializer,
    permission="q2c.view_contract",
    queryset=lambda: Contract.objects.select_related(
        "account", "legal_entity", "order"
    ).prefetch_related(
        Prefetch(
            "versions",
            queryset=ContractVersion.objects.select_related("order").order_by("number"),
        ),
        Prefetch(
            "versions__lines",
            queryset=ContractLine.objects.select_related("product").order_by("line_no"),
        ),
    ),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "legal_entity": "legal_entity__code",
        "currency": "currency",
        "order": "order__enterprise_id",
    },
    choices={"state": choice_values(ContractState)},
)
InvoiceList, InvoiceDetail = record_views(
    name="Invoice",
    serializer=out.InvoiceSerializer,
    permission="q2c.view_invoice",
    queryset=lambda: Invoice.objects.select_related(
        "account", "legal_entity", "contract", "order"
    ).prefetch_related(lines_prefetch(InvoiceLine)),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "number": "number",
        "currency": "currency",
        "order": "order__enterprise_id",
        "contract": "contract__enterprise_id",
    },
    choices={"state": choice_values(InvoiceState)},
)
CreditNoteList, CreditNoteDetail = record_views(
    name="CreditNote",
    serializer=out.CreditNoteSerializer,
    permission="q2c.view_creditnote",
    queryset=lambda: CreditNote.objects.select_related("invoice", "account"),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "invoice": "invoice__enterprise_id",
    },
    choices={"state": choice_values(CreditNoteState)},
)
PaymentList, PaymentDetail = record_views(
    name="Payment",
    serializer=out.PaymentSerializer,
    permission="q2c.view_payment",
    queryset=lambda: Payment.objects.select_related("invoice", "account"),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "invoice": "invoice__enterprise_id",
        "currency": "currency",
    },
    choices={"state": choice_values(PaymentState)},
    ordering=("-received_at", "-id"),
)
