"""Output serializers of the read API: money as decimal strings with their currency, times
ISO 8601 with their zone, records named by their enterprise ids. Read-only: writes go through
the services behind the action endpoints, never through a serializer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from masterdata.models import Account, ExternalId, Product, ProductMapping
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


class MoneySerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="decimal string, e.g. '250.0000'; never a float")
    currency = serializers.CharField(help_text="ISO 4217 code")


def _attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@extend_schema_field(MoneySerializer)
class MoneyField(serializers.Field):
    """An amount field and the currency beside it (``currency`` may be a dotted path to the
    parent record's, which the prefetch has already cached)."""

    def __init__(self, amount: str, currency: str = "currency", **kwargs: Any) -> None:
        self.amount_attr = amount
        self.currency_attr = currency
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> dict[str, str]:
        amount: Decimal = _attr(value, self.amount_attr)
        return {"amount": format(amount, "f"), "currency": str(_attr(value, self.currency_attr))}


def _ref(slug: str = "enterprise_id", **kwargs: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field=slug, read_only=True, **kwargs)


class ExternalIdSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExternalId
        fields = ["system", "object_type", "external_id"]


class _WithCrosswalk(serializers.Serializer):
    """The record's ids in every system (attached to the page by the view, one query)."""

    external_ids = ExternalIdSerializer(many=True, read_only=True, source="api_crosswalk")


_LINE_FIELDS = [
    "line_no", "product", "product_code", "description", "kind", "quantity", "unit_price",
    "discount_percent", "billing_period", "term_start", "term_end", "amount",
]  # fmt: skip
_RECORD_TIMES = ["state_changed_at", "created_at", "updated_at"]


class QuoteLineSerializer(serializers.ModelSerializer):
    product = _ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "quote.currency")
    amount = MoneyField("amount", "quote.currency")

    class Meta:
        model = QuoteLine
        fields = _LINE_FIELDS


class QuoteSerializer(_WithCrosswalk, serializers.ModelSerializer):
    account = _ref(allow_null=True)
    legal_entity = _ref("code")
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
    product = _ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "order.currency")
    amount = MoneyField("amount", "order.currency")

    class Meta:
        model = OrderLine
        fields = _LINE_FIELDS


class OrderSerializer(_WithCrosswalk, serializers.ModelSerializer):
    quote = _ref("cpq_quote_id", allow_null=True, help_text="the CPQ quote id")
    account = _ref(allow_null=True)
    legal_entity = _ref("code")
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
    product = _ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "version.contract.currency")
    amount = MoneyField("amount", "version.contract.currency")

    class Meta:
        model = ContractLine
        fields = _LINE_FIELDS


class ContractVersionSerializer(serializers.ModelSerializer):
    order = _ref(allow_null=True)
    lines = ContractLineSerializer(many=True, read_only=True)

    class Meta:
        model = ContractVersion
        fields = ["number", "kind", "effective_date", "order", "state", "created_at", "lines"]


class ContractSerializer(_WithCrosswalk, serializers.ModelSerializer):
    account = _ref()
    legal_entity = _ref("code")
    order = _ref(allow_null=True)
    versions = ContractVersionSerializer(many=True, read_only=True)

    class Meta:
        model = Contract
        fields = [
            "enterprise_id", "account", "legal_entity", "order", "state", "currency",
            "start_date", "end_date", "activated_at", "cancellation_reason", *_RECORD_TIMES,
            "versions", "external_ids",
        ]  # fmt: skip


class InvoiceLineSerializer(serializers.ModelSerializer):
    product = _ref("sku", allow_null=True)
    unit_price = MoneyField("unit_price", "invoice.currency")
    amount = MoneyField("amount", "invoice.currency")

    class Meta:
        model = InvoiceLine
        fields = [
            "line_no", "product", "description", "quantity", "unit_price", "amount",
            "period_start", "period_end",
        ]  # fmt: skip


class InvoiceSerializer(_WithCrosswalk, serializers.ModelSerializer):
    account = _ref()
    legal_entity = _ref("code")
    contract = _ref(allow_null=True)
    order = _ref(allow_null=True)
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


class CreditNoteSerializer(_WithCrosswalk, serializers.ModelSerializer):
    invoice = _ref()
    account = _ref()
    amount = MoneyField("amount")

    class Meta:
        model = CreditNote
        fields = [
            "enterprise_id", "invoice", "account", "state", "currency", "amount", "reason",
            *_RECORD_TIMES, "external_ids",
        ]  # fmt: skip


class PaymentSerializer(_WithCrosswalk, serializers.ModelSerializer):
    account = _ref()
    invoice = _ref(allow_null=True)
    amount = MoneyField("amount")

    class Meta:
        model = Payment
        fields = [
            "enterprise_id", "account", "invoice", "state", "currency", "amount", "received_at",
            "method", "failure_reason", *_RECORD_TIMES, "external_ids",
        ]  # fmt: skip


class AccountSerializer(_WithCrosswalk, serializers.ModelSerializer):
    legal_entity = _ref("code", allow_null=True)
    merged_into = _ref(allow_null=True)
    aliases: Any = serializers.SlugRelatedField(slug_field="alias", many=True, read_only=True)

    class Meta:
        model = Account
        fields = [
            "enterprise_id", "legal_name", "domain", "tax_id", "country", "currency",
            "legal_entity", "address_line1", "address_line2", "city", "postcode", "region",
            "phone", "email", "status", "merged_into", "aliases", "created_at", "updated_at",
            "external_ids",
        ]  # fmt: skip


class ProductMappingSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductMapping
        fields = ["system", "external_id", "external_kind"]


class ProductSerializer(serializers.ModelSerializer):
    mappings = ProductMappingSerializer(many=True, read_only=True)

    class Meta:
        model = Product
        fields = [
            "enterprise_id", "sku", "name", "kind", "billing_period", "is_active", "created_at",
            "updated_at", "mappings",
        ]  # fmt: skip


# --- The audit trail ----------------------------------------------------------------------


class FieldChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.CharField(allow_null=True)
    new = serializers.CharField(allow_null=True)


class HistoryEntrySerializer(serializers.Serializer):
    history_id = serializers.IntegerField()
    model = serializers.CharField(help_text="app_label.model_name")
    record = serializers.CharField(help_text="the enterprise id, or the primary key")
    record_id = serializers.IntegerField()
    when = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=["created", "changed", "deleted"])
    actor = serializers.CharField(help_text="username or system actor; empty if unknown")
    actor_is_system = serializers.BooleanField()
    reason = serializers.CharField()
    changes = FieldChangeSerializer(many=True)


class HistoryPageSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="the URL of the next (older) page")
    results = HistoryEntrySerializer(many=True)


class RecordAsOfSerializer(serializers.Serializer):
    model = serializers.CharField()
    record = serializers.CharField()
    at = serializers.DateTimeField()
    existed = serializers.BooleanField()
    changed_at = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    values = serializers.DictField(child=serializers.CharField(allow_null=True))
