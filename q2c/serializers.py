"""Output serializers of the read API: money as decimal strings with their currency, times
ISO 8601 with their zone, records named by their enterprise ids. Read-only: writes go through
the services behind the action endpoints, never through a serializer."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import MoneyField, MoneySerializer, slug_ref
from masterdata.api import WithCrosswalk
from q2c.models import (
    Contract,
    ContractLine,
    ContractVersion,
    CreditNote,
    Invoice,
    InvoiceLine,
    Order,
    OrderLine,
    Payment,
    Quote,
    QuoteLine,
)

_LINE_FIELDS = [
    "line_no", "product", "product_code", "description", "kind", "quantity", "unit_price",
    "discount_percent", "billing_period", "term_start", "term_end", "amount",
]  # fmt: skip
_RECORD_TIMES = ["state_changed_at", "created_at", "updated_at"]


class QuoteLineSerializer(serializers.ModelSerializer):
    product = slug_ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "quote.currency")
    amount = MoneyField("amount", "quote.currency")

    class Meta:
        model = QuoteLine
        fields = _LINE_FIELDS


class QuoteSerializer(WithCrosswalk, serializers.ModelSerializer):
    account = slug_ref(allow_null=True)
    legal_entity = slug_ref("code")
    total = MoneyField("total_amount")
    lines = QuoteLineSerializer(many=True, read_only=True)

    class Meta:
        model = Quote
        fields = [
            "enterprise_id", "cpq_quote_id", "account", "legal_entity", "state", "currency",
            "total", "approved_at", "valid_until", "rejection_reason", *_RECORD_TIMES, "lines",
            "external_ids",
        ]  # fmt: skip


class OrderLineSerializer(serializers.ModelSerializer):
    product = slug_ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "order.currency")
    amount = MoneyField("amount", "order.currency")

    class Meta:
        model = OrderLine
        fields = _LINE_FIELDS


class OrderSerializer(WithCrosswalk, serializers.ModelSerializer):
    quote = slug_ref("cpq_quote_id", allow_null=True, help_text="the CPQ quote id")
    account = slug_ref(allow_null=True)
    legal_entity = slug_ref("code")
    total = MoneyField("total_amount")
    lines = OrderLineSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "enterprise_id", "quote", "account", "legal_entity", "state", "currency", "total",
            "held_from_state", "hold_reason", "rejection_reason", "cancellation_reason",
            "accepted_at", "activated_at", *_RECORD_TIMES, "lines", "external_ids",
        ]  # fmt: skip


class ContractLineSerializer(serializers.ModelSerializer):
    product = slug_ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "version.contract.currency")
    amount = MoneyField("amount", "version.contract.currency")

    class Meta:
        model = ContractLine
        fields = _LINE_FIELDS


class ContractVersionSerializer(serializers.ModelSerializer):
    order = slug_ref(allow_null=True)
    lines = ContractLineSerializer(many=True, read_only=True)

    class Meta:
        model = ContractVersion
        fields = ["number", "kind", "effective_date", "order", "state", "created_at", "lines"]


class ContractSerializer(WithCrosswalk, serializers.ModelSerializer):
    account = slug_ref()
    legal_entity = slug_ref("code")
    order = slug_ref(allow_null=True)
    versions = ContractVersionSerializer(many=True, read_only=True)

    class Meta:
        model = Contract
        fields = [
            "enterprise_id", "account", "legal_entity", "order", "state", "currency",
            "start_date", "end_date", "activated_at", "cancellation_reason", *_RECORD_TIMES,
            "versions", "external_ids",
        ]  # fmt: skip


class InvoiceLineSerializer(serializers.ModelSerializer):
    product = slug_ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "invoice.currency")
    amount = MoneyField("amount", "invoice.currency")

    class Meta:
        model = InvoiceLine
        fields = [
            "line_no", "product", "description", "quantity", "unit_price", "amount",
            "period_start", "period_end",
        ]  # fmt: skip


class InvoiceSerializer(WithCrosswalk, serializers.ModelSerializer):
    account = slug_ref()
    legal_entity = slug_ref("code")
    contract = slug_ref(allow_null=True)
    order = slug_ref(allow_null=True)
    total = MoneyField("total_amount")
    tax = MoneyField("tax_amount")
    paid = MoneyField("amount_paid")
    balance = serializers.SerializerMethodField()
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "enterprise_id", "number", "account", "legal_entity", "contract", "order", "state",
            "currency", "issue_date", "due_date", "total", "tax", "paid", "balance",
            "posted_at", "void_reason", *_RECORD_TIMES, "lines", "external_ids",
        ]  # fmt: skip

    @extend_schema_field(MoneySerializer)
    def get_balance(self, invoice: Invoice) -> dict[str, str]:
        return {"amount": format(invoice.balance.amount, "f"), "currency": invoice.currency}


class CreditNoteSerializer(WithCrosswalk, serializers.ModelSerializer):
    invoice = slug_ref()
    account = slug_ref()
    amount = MoneyField("amount")

    class Meta:
        model = CreditNote
        fields = [
            "enterprise_id", "invoice", "account", "state", "currency", "amount", "reason",
            *_RECORD_TIMES, "external_ids",
        ]  # fmt: skip


class PaymentSerializer(WithCrosswalk, serializers.ModelSerializer):
    account = slug_ref()
    invoice = slug_ref(allow_null=True)
    amount = MoneyField("amount")

    class Meta:
        model = Payment
        fields = [
            "enterprise_id", "account", "invoice", "state", "currency", "amount", "received_at",
            "method", "failure_reason", *_RECORD_TIMES, "external_ids",
        ]  # fmt: skip
