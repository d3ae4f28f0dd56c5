from django.contrib import admin
from django.template.response import TemplateResponse

from core.models import ApiToken, IdentifierCounter
from core.tokens import api_token_issue


@admin.register(IdentifierCounter)
class IdentifierCounterAdmin(admin.ModelAdmin):
    list_display = ("prefix", "last_value")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued here (or by ``manage.py api_token``) and shown once, on the page
    answering the issue; the admin lists who has one, never a token."""

    list_display = ("user", "prefix", "created")
    search_fields = ("user__username",)

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return ("user",) if obj is None else ("user", "prefix", "created")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        request._issued_api_token = api_token_issue(user=obj.user)
        issued = ApiToken.objects.get(user=obj.user)
        obj.pk, obj.digest, obj.prefix, obj.created = (
            issued.pk, issued.digest, issued.prefix, issued.created,
        )  # fmt: skip
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):  # type: ignore[no-untyped-def]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token issued",
            "token": request._issued_api_token,
            "token_user": obj.user,
        }
        return TemplateResponse(request, "admin/core/apitoken/issued.html", context)
