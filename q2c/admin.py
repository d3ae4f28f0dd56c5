from django.contrib import admin

from core.admin_tools import AuditedAdmin, transition_action
from q2c import services
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
    UsageRecord,
)


class QuoteLineInline(admin.TabularInline):
    model = QuoteLine
    extra = 0


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0


class ContractLineInline(admin.TabularInline):
    model = ContractLine
    extra = 0


@admin.register(Quote)
class QuoteAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "cpq_quote_id", "account", "state", "total_amount", "currency")
    list_filter = ("state", "legal_entity", "currency")
    search_fields = ("enterprise_id", "cpq_quote_id", "account__legal_name")
    inlines = [QuoteLineInline]


@admin.register(Order)
class OrderAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "account", "legal_entity", "state", "state_changed_at",
                    "total_amount", "currency")  # fmt: skip
    list_filter = ("state", "legal_entity", "currency")
    search_fields = ("enterprise_id", "quote__cpq_quote_id", "account__legal_name",
                     "account__enterprise_id")  # fmt: skip
    list_select_related = ("account", "legal_entity")
    inlines = [OrderLineInline]
    actions = [
        transition_action(services.order_release, "order", "Release from hold"),
        transition_action(services.order_cancel, "order", "Cancel"),
    ]


@admin.register(Contract)
class ContractAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "account", "legal_entity", "state", "start_date", "end_date")
    list_filter = ("state", "legal_entity", "currency")
    search_fields = ("enterprise_id", "account__legal_name", "order__enterprise_id")
    list_select_related = ("account", "legal_entity")


@admin.register(ContractVersion)
class ContractVersionAdmin(AuditedAdmin):
    list_display = ("contract", "number", "kind", "effective_date", "state")
    list_filter = ("kind", "state")
    search_fields = ("contract__enterprise_id",)
    inlines = [ContractLineInline]


@admin.register(Invoice)
class InvoiceAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "number", "account", "state", "total_amount", "amount_paid",
                    "currency")  # fmt: skip
    list_filter = ("state", "legal_entity", "currency")
    search_fields = ("enterprise_id", "number", "account__legal_name")
    list_select_related = ("account",)
    inlines = [InvoiceLineInline]
    actions = [transition_action(services.invoice_post, "invoice", "Post")]


@admin.register(CreditNote)
class CreditNoteAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "invoice", "amount", "currency", "state")
    list_filter = ("state", "currency")
    search_fields = ("enterprise_id", "invoice__enterprise_id", "invoice__number")


@admin.register(Payment)
class PaymentAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "account", "invoice", "amount", "currency", "state")
    list_filter = ("state", "currency")
    search_fields = ("enterprise_id", "invoice__enterprise_id", "account__legal_name")


@admin.register(UsageRecord)
class UsageRecordAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "contract", "product", "quantity", "occurred_at", "state")
    list_filter = ("state", "source_system")
    search_fields = ("enterprise_id", "source_event_id", "contract__enterprise_id")


for model in (QuoteLine, OrderLine, ContractLine, InvoiceLine):
    admin.site.register(model, AuditedAdmin)
