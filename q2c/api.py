"""The read API (/api/v1/): canonical records and their audit trail.

Deny by default: every view names the permission it needs (``required_permission``), the
same one the console's page for those records checks (q2c.roles). Lists are cursor-paginated
(no COUNT(*), the same cost on every page); filters are exact matches on indexed columns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, cast

from django.db.models import Model, Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from drf_spectacular.views import SpectacularAPIView
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from masterdata.models import Account, AccountStatus, ExternalId, Product
from q2c import audit_selectors as audit
from q2c import serializers as out
from q2c.models import (
    Contract,
    ContractLine,
    ContractState,
    ContractVersion,
    CreditNote,
    CreditNoteState,
    Invoice,
    InvoiceLine,
    InvoiceState,
    Order,
    OrderLine,
    OrderState,
    Payment,
    PaymentState,
    Quote,
    QuoteLine,
    QuoteState,
)
from q2c.records import LineKind


class ConsolePermission(BasePermission):
    """Allow only a signed-in user holding the view's ``required_permission``; a view that
    names none is refused to everyone."""

    message = "your role may not read these records"

    def has_permission(self, request: Request, view: Any) -> bool:
        perm = getattr(view, "required_permission", "")
        user = request.user
        return bool(perm and user and user.is_authenticated and user.has_perm(perm))


class AuditPermission(BasePermission):
    """A signed-in user who may view at least one tracked model's records."""

    message = "your role may not view any record's history"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and audit.visible_tracked_models(user))


_ERRORS = {
    400: OpenApiResponse(description="a filter value is not valid"),
    401: OpenApiResponse(description="no valid token or session"),
    403: OpenApiResponse(description="your role may not read these records"),
}
_LIST_ERRORS = {**_ERRORS, 404: OpenApiResponse(description="the cursor is not valid")}
_DETAIL_ERRORS = {
    401: _ERRORS[401],
    403: _ERRORS[403],
    404: OpenApiResponse(description="no such record"),
}


class _Cursor(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering: Any = ("-created_at", "-id")


def _cursor(*ordering: str) -> type[CursorPagination]:
    return type("Cursor", (_Cursor,), {"ordering": ordering})


def attach_crosswalk(records: list[Model]) -> None:
    """Give each record ``api_crosswalk``: its external ids, in one query for the page."""
    if not records:
        return
    opts = records[0]._meta
    by_id: dict[str, list[ExternalId]] = {}
    links = ExternalId.objects.filter(
        content_type__app_label=opts.app_label,
        content_type__model=opts.model_name,
        enterprise_id__in=[r.enterprise_id for r in records],  # type: ignore[attr-defined]
    ).order_by("system", "object_type", "external_id")
    for link in links:
        by_id.setdefault(link.enterprise_id, []).append(link)
    for record in records:
        record.api_crosswalk = by_id.get(record.enterprise_id, [])  # type: ignore[attr-defined]


class RecordFilters:
    """Exact-match query filters: ``filters`` maps a parameter to a lookup, ``choices``
    limits a parameter's values (anything else is a 400)."""

    filters: ClassVar[dict[str, str]] = {}
    choices: ClassVar[dict[str, list[str]]] = {}

    def filter_queryset_by_params(self, qs: QuerySet[Any], params: Any) -> QuerySet[Any]:
        errors = {}
        for name, lookup in self.filters.items():
            value = params.get(name)
            if value in (None, ""):
                continue
            allowed = self.choices.get(name)
            if "\x00" in value:
                errors[name] = ["must not contain NUL characters"]
                continue
            if allowed is not None and value not in allowed:
                errors[name] = [f"must be one of {', '.join(a or '(empty)' for a in allowed)}"]
                continue
            if allowed == ["true", "false"]:
                qs = qs.filter(**{lookup: value == "true"})
            else:
                qs = qs.filter(**{lookup: value})
        if errors:
            raise ValidationError(errors)
        return qs

    @classmethod
    def schema_parameters(cls) -> list[OpenApiParameter]:
        return [
            OpenApiParameter(name, OpenApiTypes.STR, enum=cls.choices.get(name), required=False)
            for name in cls.filters
        ]


class RecordList(RecordFilters, generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [ConsolePermission]
    required_permission = ""
    pagination_class = _Cursor
    crosswalk = True

    def base_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        return self.filter_queryset_by_params(self.base_queryset(), self.request.query_params)

    def paginate_queryset(self, queryset: Any) -> list[Any] | None:
        page = super().paginate_queryset(queryset)
        if page is not None and self.crosswalk:
            attach_crosswalk(page)
        return page


class RecordDetail(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [ConsolePermission]
    required_permission = ""
    lookup_field = "enterprise_id"
    crosswalk = True

    def base_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        return self.base_queryset()

    def get_object(self) -> Any:
        record = super().get_object()
        if self.crosswalk:
            attach_crosswalk([record])
        return record


def _values(choices: Any) -> list[str]:
    return [str(value) for value in choices.values]


def _record_views(
    *,
    name: str,
    serializer: type[serializers.Serializer],
    permission: str,
    queryset: Any,
    filters: dict[str, str],
    choices: dict[str, list[str]],
    ordering: tuple[str, ...] = ("-created_at", "-id"),
    crosswalk: bool = True,
) -> tuple[type[RecordList], type[RecordDetail]]:
    """A list view and a detail view of one kind of record, documented for the schema."""
    attrs = {
        "serializer_class": serializer,
        "required_permission": permission,
        "base_queryset": lambda self: queryset(),
        "crosswalk": crosswalk,
    }
    list_view: Any = type(
        f"{name}List",
        (RecordList,),
        {**attrs, "filters": filters, "choices": choices, "pagination_class": _cursor(*ordering)},
    )
    detail_view: Any = type(f"{name}Detail", (RecordDetail,), attrs)
    plural = f"{name.lower()}s"
    list_view = extend_schema_view(
        get=extend_schema(
            tags=[plural],
            operation_id=f"{plural}_list",
            parameters=list_view.schema_parameters(),
            responses={200: serializer(many=True), **_LIST_ERRORS},
        )
    )(list_view)
    detail_view = extend_schema_view(
        get=extend_schema(
            tags=[plural],
            operation_id=f"{plural}_retrieve",
            responses={200: serializer, **_DETAIL_ERRORS},
        )
    )(detail_view)
    return list_view, detail_view


def _lines(model: Any) -> Prefetch:
    """A record's lines with their products, in one query for the page."""
    return Prefetch("lines", queryset=model.objects.select_related("product").order_by("line_no"))


QuoteList, QuoteDetail = _record_views(
    name="Quote",
    serializer=out.QuoteSerializer,
    permission="q2c.view_quote",
    queryset=lambda: Quote.objects.select_related("account", "legal_entity").prefetch_related(
        _lines(QuoteLine)
    ),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "cpq_quote_id": "cpq_quote_id",
    },
    choices={"state": _values(QuoteState)},
)
OrderList, OrderDetail = _record_views(
    name="Order",
    serializer=out.OrderSerializer,
    permission="q2c.view_order",
    queryset=lambda: Order.objects.select_related(
        "quote", "account", "legal_entity"
    ).prefetch_related(_lines(OrderLine)),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "legal_entity": "legal_entity__code",
        "currency": "currency",
        "cpq_quote_id": "quote__cpq_quote_id",
    },
    choices={"state": _values(OrderState)},
)
ContractList, ContractDetail = _record_views(
    name="Contract",
    serializer=out.ContractSerializer,
    permission="q2c.view_contract",
    queryset=lambda: Contract.objects.select_related(
        "account", "legal_entity", "order"
    ).prefetch_related(
        Prefetch(
            "versions",
            queryset=ContractVersion.objects.select_related("order").order_by("number"),
        ),
        Prefetch(
            "versions__lines",
            queryset=ContractLine.objects.select_related("product").order_by("line_no"),
        ),
    ),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "legal_entity": "legal_entity__code",
        "currency": "currency",
        "order": "order__enterprise_id",
    },
    choices={"state": _values(ContractState)},
)
InvoiceList, InvoiceDetail = _record_views(
    name="Invoice",
    serializer=out.InvoiceSerializer,
    permission="q2c.view_invoice",
    queryset=lambda: Invoice.objects.select_related(
        "account", "legal_entity", "contract", "order"
    ).prefetch_related(_lines(InvoiceLine)),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "number": "number",
        "currency": "currency",
        "order": "order__enterprise_id",
        "contract": "contract__enterprise_id",
    },
    choices={"state": _values(InvoiceState)},
)
CreditNoteList, CreditNoteDetail = _record_views(
    name="CreditNote",
    serializer=out.CreditNoteSerializer,
    permission="q2c.view_creditnote",
    queryset=lambda: CreditNote.objects.select_related("invoice", "account"),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "invoice": "invoice__enterprise_id",
    },
    choices={"state": _values(CreditNoteState)},
)
PaymentList, PaymentDetail = _record_views(
    name="Payment",
    serializer=out.PaymentSerializer,
    permission="q2c.view_payment",
    queryset=lambda: Payment.objects.select_related("invoice", "account"),
    filters={
        "state": "state",
        "account": "account__enterprise_id",
        "invoice": "invoice__enterprise_id",
        "currency": "currency",
    },
    choices={"state": _values(PaymentState)},
    ordering=("-received_at", "-id"),
)
AccountList, AccountDetail = _record_views(
    name="Account",
    serializer=out.AccountSerializer,
    permission="masterdata.view_account",
    queryset=lambda: Account.objects.select_related("legal_entity", "merged_into").prefetch_related(
        "aliases"
    ),
    filters={
        "status": "status",
        "country": "country",
        "currency": "currency",
        "domain": "domain",
        "tax_id": "tax_id",
        "legal_entity": "legal_entity__code",
    },
    choices={"status": _values(AccountStatus)},
    ordering=("enterprise_id",),
)
ProductList, ProductDetail = _record_views(
    name="Product",
    serializer=out.ProductSerializer,
    permission="masterdata.view_product",
    queryset=lambda: Product.objects.prefetch_related("mappings"),
    filters={"kind": "kind", "is_active": "is_active", "sku": "sku"},
    choices={"kind": _values(LineKind), "is_active": ["true", "false"]},
    ordering=("sku",),
    crosswalk=False,
)


# --- The audit trail ----------------------------------------------------------------------


class HistoryQuery(serializers.Serializer):
    model = serializers.ChoiceField(choices=[], required=False, help_text="app_label.model_name")
    record = serializers.CharField(required=False, max_length=64)
    actor = serializers.CharField(required=False, max_length=150)
    actor_kind = serializers.ChoiceField(choices=list(audit.ACTOR_KINDS), required=False)
    since = serializers.DateTimeField(required=False, help_text="inclusive")
    until = serializers.DateTimeField(required=False, help_text="exclusive")
    field = serializers.CharField(
        required=False, max_length=64, help_text="only rows that changed this field"
    )
    cursor = serializers.CharField(required=False, max_length=200)
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
        responses={200: out.HistoryPageSerializer, **_LIST_ERRORS},
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
        return Response(out.HistoryPageSerializer(data).data)


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
        responses={200: out.RecordAsOfSerializer, **_ERRORS},
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
        return Response(out.RecordAsOfSerializer(data).data)


# --- The schema and its browsable page ------------------------------------------------------


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, for signed-in users and token holders."""

    permission_classes = [IsAuthenticated]


class SchemaDocsView(SpectacularAPIView):
    """The schema rendered by DRF's browsable API (no CDN-hosted documentation UI)."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [BrowsableAPIRenderer, *SpectacularAPIView.renderer_classes]
