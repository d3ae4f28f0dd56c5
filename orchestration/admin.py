"""Read-only admin for the operational logs. Bodies are shown redacted, never raw."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from orchestration.models import InboundEvent, OutboundCall
from orchestration.redaction import body_for_storage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboundCall)
class OutboundCallAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "system", "operation", "method", "path", "status_code",
                    "outcome", "error_class", "latency_ms", "attempt",
                    "correlation_id")  # fmt: skip
    list_filter = ("system", "outcome", "error_class")
    search_fields = ("correlation_id", "idempotency_key", "path", "operation")
    date_hierarchy = "created_at"


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "system", "event_id", "event_type", "status",
                    "signature_valid", "duplicate_deliveries", "rejection_reason")  # fmt: skip
    list_filter = ("system", "status", "signature_valid", "canonical_type")
    search_fields = ("event_id", "correlation_id", "event_type")
    date_hierarchy = "received_at"
    exclude = ("raw_body",)
    readonly_fields = ("body_redacted",)

    @admin.display(description="body (redacted)")
    def body_redacted(self, obj: InboundEvent) -> str:
        text = body_for_storage(obj.raw_body, max_bytes=64 * 1024)
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text
