"""Admin building blocks: history on every model, state read-only, transitions as actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from core.audit import Actor
from core.errors import Refused


class AuditedAdmin(SimpleHistoryAdmin):
    """History per record; enterprise ids and state are never edited by hand."""

    readonly_always = ("enterprise_id", "state", "status", "created_at", "updated_at",
                       "state_changed_at")  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        names = {f.name for f in self.model._meta.get_fields()}
        fields += [name for name in self.readonly_always if name in names and name not in fields]
        return fields


def transition_action(
    service: Callable[..., Any], record_kw: str, label: str
) -> Callable[[Any, HttpRequest, QuerySet[Any]], None]:
    """An admin action that runs ``service`` on each selected record as the signed-in admin.

    A record the service refuses (``Refused``) or the admin may not act on
    (``PermissionDenied``) is reported and the others still run; any other error is a bug
    and propagates."""

    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        actor = Actor.person(request.user)
        done, failed = 0, []
        for record in queryset.order_by("pk"):
            try:
                service(**{record_kw: record}, actor=actor, reason=f"admin action: {label}")
                done += 1
            except Refused as exc:
                failed.append(f"{record}: {exc.message}")
            except PermissionDenied as exc:
                failed.append(f"{record}: {exc}")
        if done:
            modeladmin.message_user(request, f"{label}: {done} done", messages.SUCCESS)
        for line in failed:
            modeladmin.message_user(request, line, messages.ERROR)

    action.__name__ = f"action_{service.__name__}"
    return admin.action(description=label)(action)
