"""Admin for the exception queue: history per exception, closing through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.admin_tools import AuditedAdmin, transition_action
from exceptions import services
from exceptions.models import ExceptionComment, OperationalException, Replay


@admin.register(OperationalException)
class OperationalExceptionAdmin(AuditedAdmin):
    list_display = ("id", "created_at", "state", "category", "severity", "owner_team",
                    "system", "step", "correlation_id", "order", "sla_due_at")  # fmt: skip
    list_filter = ("state", "category", "owner_team", "system", "severity")
    search_fields = ("message", "correlation_id")
    list_select_related = ("order",)
    date_hierarchy = "created_at"
    # Only who owns it may change by hand; state moves through the actions (and services).
    editable = ("owner_team", "severity", "assignee")
    actions = [
        transition_action(services.exception_retry, "exception", "Retry the failed step"),
        transition_action(services.exception_resolve_in_admin, "exception", "Resolve"),
        transition_action(services.exception_ignore, "exception", "Ignore"),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.concrete_fields if f.name not in self.editable]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # raised by the workflow engine, never by hand

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the queue is an audit trail


@admin.register(Replay)
class ReplayAdmin(AuditedAdmin):
    """Read-only: replays are requested, decided and executed through the services (the
    maker-checker rule lives there and in the database)."""

    list_display = ("id", "requested_at", "kind", "state", "workflow_run", "step_run",
                    "requested_by", "decided_by", "finished_at")  # fmt: skip
    list_filter = ("state", "kind", "compensation")
    list_select_related = ("workflow_run", "step_run", "requested_by", "decided_by")
    search_fields = ("reason", "workflow_run__subject_id")
    date_hierarchy = "requested_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ExceptionComment)
class ExceptionCommentAdmin(AuditedAdmin):
    list_display = ("id", "created_at", "exception", "author")
    list_select_related = ("exception", "author")
    search_fields = ("body",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
