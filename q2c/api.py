"""The read API of the commercial records (/api/v1/): quotes, orders, contracts, invoices,
credit notes and payments, each a list and a detail built on masterdata's record views.

Deny by default: every view names the permission it needs (``required_permission``), the
same one the console's page for those records checks (core.roles). Lists are cursor-paginated
(no COUNT(*), the same cost on every page); filters are exact matches on indexed columns.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ERRORS, ConsolePermission, choice_values
from core.audit import Actor
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
from q2c.usage import (
    MAX_RECORDS_PER_REQUEST,
    RowError,
    UsageInput,
    usage_records_ingest,
    usage_row_parse,
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


# --- usage in bulk ---------------------------------------------------------------------------

_SOURCE_SYSTEM = re.compile(r"^[a-z][a-z0-9_-]{0,19}$")


class UsageRecordIn(serializers.Serializer):
    """One usage record (documentation only: records are checked one by one, in the
    service, so one bad record is reported back without refusing the others)."""

    usage_id = serializers.CharField(
        max_length=128, help_text="the sender's id: sent twice, kept once"
    )
    contract_id = serializers.CharField(max_length=20, help_text="CTR-…")
    product_code = serializers.CharField(max_length=64, help_text="the product's SKU")
    quantity = serializers.CharField(help_text='a decimal string, at least 0, e.g. "12.5"')
    occurred_at = serializers.DateTimeField(help_text="RFC 3339 with its offset")
    corrects = serializers.CharField(
        required=False, help_text="the usage_id of an earlier record this one replaces"
    )


class UsageBulkIn(serializers.Serializer):
    source_system = serializers.RegexField(
        _SOURCE_SYSTEM.pattern, help_text="who sends (its ids are unique within it), e.g. metering"
    )
    records = UsageRecordIn(many=True, help_text=f"at most {MAX_RECORDS_PER_REQUEST}")


class UsageRowErrorOut(serializers.Serializer):
    index = serializers.IntegerField(help_text="the record's position in the request")
    usage_id = serializers.CharField()
    reason = serializers.CharField()


class UsageBulkOut(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejections = UsageRowErrorOut(many=True)


class UsageBulk(APIView):
    """``POST /api/v1/usage/bulk/``: store and rate up to ``MAX_RECORDS_PER_REQUEST`` usage
    records in one transaction. Records already received (by ``source_system`` and
    ``usage_id``) are counted as duplicates and change nothing; a record that cannot be
    rated is reported back with its index and reason while the others are stored."""

    permission_classes = [ConsolePermission]
    required_permission = "q2c.report_usage"

    @extend_schema(
        request=UsageBulkIn,
        responses={
            200: UsageBulkOut,
            400: OpenApiResponse(description="the request is not a batch of records"),
            401: ERRORS[401],
            403: OpenApiResponse(description="your role may not send usage"),
        },
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationError({"detail": "the body is a JSON object"})
        source_system = body.get("source_system")
        if not isinstance(source_system, str) or not _SOURCE_SYSTEM.match(source_system):
            raise ValidationError(
                {"source_system": ["lower-case letters, digits, _ or -, at most 20"]}
            )
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise ValidationError({"records": ["a non-empty list of usage records"]})
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise ValidationError(
                {"records": [f"at most {MAX_RECORDS_PER_REQUEST} records per request"]}
            )
        rows: list[UsageInput | RowError] = []
        for index, raw in enumerate(records):
            try:
                rows.append(usage_row_parse(raw))
            except ValueError as exc:
                usage_id = raw.get("usage_id") if isinstance(raw, dict) else None
                rows.append(RowError(index, str(usage_id or "")[:128], str(exc)))
        result = usage_records_ingest(
            source_system=source_system,
            rows=rows,
            actor=Actor.person(request.user),
            reason=f"usage sent by {source_system} in bulk",
        )
        return Response(
            UsageBulkOut(
                {
                    "received": len(records),
                    "created": result.created,
                    "duplicates": result.duplicates,
                    "rejected": result.rejected,
                    "rejections": [
                        {"index": e.index, "usage_id": e.usage_id, "reason": e.reason}
                        for e in result.errors
                    ],
                }
            ).data
        )
