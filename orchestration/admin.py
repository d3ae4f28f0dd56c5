"""Read-only admin for the operational logs and the workflow engine's state.

Bodies are shown redacted, never raw. Runs, steps, effects, signals and circuit breakers are
changed only by the engine, so the admin shows them and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from simple_history.admin import SimpleHistoryAdmin

from core.redaction import body_for_storage
from orchestration.connectors.selectors import connector_settings
from orchestration.models import InboundEvent, OutboundCall, PollCursor, RetentionPurge
from orchestration.reconciliation.models import DriftItem, ReconciliationRun
from orchestration.workflows.models import (
    CircuitBreaker,
    StepEffect,
    StepRun,
    WorkflowRun,
    WorkflowSignal,
)


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


@admin.register(RetentionPurge)
class RetentionPurgeAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    list_display = ("started_at", "cutoff", "retention_days", "inbound_bodies",
                    "outbound_bodies", "batches", "triggered_by")  # fmt: skip
    date_hierarchy = "started_at"


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = ("position", "name", "system", "state", "attempts", "max_attempts",
              "next_attempt_at", "waiting_for", "external_id", "skipped_effect",
              "last_error")  # fmt: skip
    readonly_fields = fields
    ordering = ("position",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    list_display = ("id", "kind", "subject_id", "subject_version", "state", "current_step",
                    "created_at", "updated_at", "completed_at")  # fmt: skip
    list_filter = ("state", "kind")
    search_fields = ("subject_id", "current_step")
    date_hierarchy = "created_at"
    inlines = [StepRunInline]


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "position", "name", "system", "state", "attempts",
                    "external_id", "next_attempt_at")  # fmt: skip
    list_filter = ("state", "system", "name")
    search_fields = ("idempotency_key", "external_id", "run__subject_id")
    list_select_related = ("run",)


@admin.register(StepEffect)
class StepEffectAdmin(ReadOnlyAdmin):
    list_display = ("idempotency_key", "system", "external_id", "created_at")
    list_filter = ("system",)
    search_fields = ("idempotency_key", "external_id")


@admin.register(WorkflowSignal)
class WorkflowSignalAdmin(ReadOnlyAdmin):
    list_display = ("run", "event_type", "received_at")
    list_filter = ("event_type",)
    search_fields = ("run__subject_id", "event_type")
    list_select_related = ("run",)


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(ReadOnlyAdmin):
    list_display = ("system", "state", "consecutive_failures", "opened_at", "open_until",
                    "updated_at", "last_failure")  # fmt: skip
    list_filter = ("state",)

    def get_urls(self) -> list[URLPattern]:
        # The active connector configuration sits beside the circuit breakers it governs.
        view = self.admin_site.admin_view(self.connector_settings_view)
        return [
            path("connectors/", view, name="orchestration_connector_settings"),
            *super().get_urls(),
        ]

    def connector_settings_view(self, request: HttpRequest) -> HttpResponse:
        """Each system kind's implementation and endpoint, for admins only; no secret shown."""
        if not request.user.is_superuser:
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "rows": connector_settings(),
                   "title": "Connector configuration"}  # fmt: skip
        return TemplateResponse(request, "admin/orchestration/connector_settings.html", context)


@admin.register(PollCursor)
class PollCursorAdmin(ReadOnlyAdmin):
    list_display = ("system", "stream", "cursor", "last_run_at", "last_success_at",
                    "consecutive_failures", "events_stored", "last_error")  # fmt: skip
    list_filter = ("system",)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    list_display = (
        "__str__",
        "system",
        "since",
        "started_at",
        "state",
        "found",
        "opened",
        "closed",
    )
    list_filter = ("system", "state")


@admin.register(DriftItem)
class DriftItemAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    """Read here; finance resolves drift on /reconciliation/ (a code and a reason)."""

    list_display = (
        "__str__", "system", "object_type", "drift_type", "tandem_ref", "remote_ref",
        "difference", "currency", "state", "first_seen_at",
    )  # fmt: skip
    list_filter = ("state", "system", "drift_type")
    search_fields = ("tandem_ref", "remote_ref")
