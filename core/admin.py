from django.contrib import admin

from core.models import IdentifierCounter


@admin.register(IdentifierCounter)
class IdentifierCounterAdmin(admin.ModelAdmin):
    list_display = ("prefix", "last_value")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
