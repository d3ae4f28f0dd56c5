from django.contrib import admin
from django.contrib.contenttypes.models import ContentType

from masterdata.models import (
    Account,
    AccountAlias,
    ExternalId,
    LegalEntity,
    Product,
    ProductMapping,
)
from q2c.admin_tools import AuditedAdmin


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
