from django.contrib import admin
from django.contrib.contenttypes.models import ContentType

from core.admin_tools import AuditedAdmin
from masterdata.models import (
    Account,
    AccountAlias,
    DuplicateCandidate,
    ExternalId,
    LegalEntity,
    MergedReference,
    MergeRecord,
    Product,
    ProductMapping,
)


@admin.register(LegalEntity)
class LegalEntityAdmin(AuditedAdmin):
    list_display = ("code", "name", "country", "currency", "erp_subsidiary")
    search_fields = ("code", "name", "enterprise_id")


@admin.register(Account)
class AccountAdmin(AuditedAdmin):
    list_display = ("enterprise_id", "legal_name", "country", "currency", "legal_entity", "status")
    list_filter = ("status", "legal_entity", "country")
    search_fields = ("enterprise_id", "legal_name", "domain", "tax_id", "aliases__alias")
    list_select_related = ("legal_entity",)
    readonly_fields = ("merged_into",)


@admin.register(AccountAlias)
class AccountAliasAdmin(AuditedAdmin):
    list_display = ("alias", "account", "created_at")
    search_fields = ("alias", "account__enterprise_id")


@admin.register(ExternalId)
class ExternalIdAdmin(AuditedAdmin):
    list_display = ("system", "object_type", "external_id", "enterprise_id", "created_at")
    list_filter = ("system", "object_type")
    search_fields = ("external_id", "enterprise_id")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):  # type: ignore[no-untyped-def]
        if db_field.name == "content_type":
            kwargs["queryset"] = ContentType.objects.filter(app_label__in=["q2c", "masterdata"])
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ProductMappingInline(admin.TabularInline):
    model = ProductMapping
    extra = 0


@admin.register(Product)
class ProductAdmin(AuditedAdmin):
    list_display = ("sku", "name", "kind", "billing_period", "is_active")
    list_filter = ("kind", "is_active")
    search_fields = ("sku", "name", "enterprise_id", "mappings__external_id")
    inlines = [ProductMappingInline]


@admin.register(ProductMapping)
class ProductMappingAdmin(AuditedAdmin):
    list_display = ("product", "system", "external_id", "external_kind")
    list_filter = ("system",)
    search_fields = ("external_id", "product__sku")


@admin.register(DuplicateCandidate)
class DuplicateCandidateAdmin(AuditedAdmin):
    """Read-only: candidates are written by detection and decided on the console."""

    list_display = ("__str__", "account_a", "account_b", "score", "status", "detected_at")
    list_filter = ("status",)
    search_fields = ("account_a__enterprise_id", "account_b__enterprise_id")
    list_select_related = ("account_a", "account_b")

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


class MergedReferenceInline(admin.TabularInline):
    model = MergedReference
    extra = 0
    can_delete = False
    fields = ("label", "content_type", "object_id", "field", "before", "after", "moved_back")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(MergeRecord)
class MergeRecordAdmin(AuditedAdmin):
    """Read-only: merges are requested, approved and undone on the console (services)."""

    list_display = ("__str__", "survivor", "loser", "state", "push_state", "requested_at")
    list_filter = ("state", "push_state")
    search_fields = ("survivor__enterprise_id", "loser__enterprise_id")
    list_select_related = ("survivor", "loser")
    inlines = [MergedReferenceInline]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
