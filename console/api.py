"""The audit trail over the API (/api/v1/audit/): history of every model you may view, and
one record as of a moment."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.selectors import audit
from core.api import ERRORS, LIST_ERRORS


class AuditPermission(BasePermission):
    """A signed-in user who may view at least one tracked model's records."""

    message = "your role may not view any record's history"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and audit.visible_tracked_models(user))


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


class HistoryQuery(serializers.Serializer):
    # A blank parameter is no filter, as the schema says (allow_blank: no minLength).
    model = serializers.ChoiceField(
        choices=[], required=False, allow_blank=True, help_text="app_label.model_name"
    )
    record = serializers.CharField(required=False, max_length=64, allow_blank=True)
    actor = serializers.CharField(required=False, max_length=150, allow_blank=True)
    actor_kind = serializers.ChoiceField(
        choices=list(audit.ACTOR_KINDS), required=False, allow_blank=True
    )
    since = serializers.DateTimeField(required=False, help_text="inclusive")
    until = serializers.DateTimeField(required=False, help_text="exclusive")
    field = serializers.CharField(
        required=False,
        max_length=64,
        allow_blank=True,
        help_text="only rows that changed this field",
    )
    cursor = serializers.CharField(required=False, max_length=200, allow_blank=True)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_field = cast(serializers.ChoiceField, self.fields["model"])
        model_field.choices = [t.key for t in audit.tracked_models()]


def _serialize_entry(entry: audit.HistoryEntry) -> dict[str, Any]:
    return {
        "history_id": entry.history_id,
        "model": entry.model,
        "record": entry.record,
        "record_id": entry.record_id,
        "when": entry.when,
        "kind": entry.kind,
        "actor": entry.actor,
        "actor_is_system": entry.actor_is_system,
        "reason": entry.reason,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in entry.changes],
    }


class HistoryList(APIView):
    """The audit trail of the models you may view, newest first, with field-level changes."""

    permission_classes = [AuditPermission]

    @extend_schema(
        tags=["audit"],
        operation_id="audit_history_list",
        parameters=[HistoryQuery],
        responses={200: HistoryPageSerializer, **LIST_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = HistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        flt = audit.HistoryFilter(
            models=(params["model"],) if params.get("model") else (),
            record=params.get("record", ""),
            actor=params.get("actor", ""),
            actor_kind=params.get("actor_kind", ""),
            since=params.get("since"),
            until=params.get("until"),
            field=params.get("field", ""),
        )
        after = audit.Cursor.decode(params["cursor"]) if params.get("cursor") else None
        if params.get("cursor") and after is None:
            raise NotFound("Invalid cursor")
        try:
            page = audit.history_page(
                user=request.user, flt=flt, after=after, size=params.get("page_size", 50)
            )
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from exc
        next_url = None
        if page.next_cursor is not None:
            next_params = request.query_params.copy()
            next_params["cursor"] = page.next_cursor.encode()
            next_url = request.build_absolute_uri(f"{request.path}?{next_params.urlencode()}")
        data = {"next": next_url, "results": [_serialize_entry(e) for e in page.entries]}
        return Response(HistoryPageSerializer(data).data)


class AsOfQuery(serializers.Serializer):
    model = serializers.ChoiceField(choices=[], help_text="app_label.model_name")
    record = serializers.CharField(max_length=64, help_text="enterprise id or primary key")
    at = serializers.DateTimeField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_field = cast(serializers.ChoiceField, self.fields["model"])
        model_field.choices = [t.key for t in audit.tracked_models()]


class RecordAsOf(APIView):
    """One record as it stood at a moment: its latest history row at or before ``at``."""

    permission_classes = [AuditPermission]

    @extend_schema(
        tags=["audit"],
        operation_id="audit_as_of",
        parameters=[AsOfQuery],
        responses={200: RecordAsOfSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = AsOfQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        visible = {t.key: t for t in audit.visible_tracked_models(request.user)}
        tracked = visible.get(params["model"])
        if tracked is None:
            raise PermissionDenied(f"you may not view the history of {params['model']}")
        at: dt.datetime = params["at"]
        found = audit.record_as_of(tracked=tracked, record=params["record"], when=at)
        row = found.row
        data = {
            "model": tracked.key,
            "record": params["record"],
            "at": at,
            "existed": row is not None,
            "changed_at": row.history_date if row is not None else None,
            "changed_by": (
                row.history_user.get_username()
                if row is not None and row.history_user is not None
                else None
            ),
            "reason": row.history_change_reason if row is not None else None,
            "values": dict(found.values),
        }
        return Response(RecordAsOfSerializer(data).data)
