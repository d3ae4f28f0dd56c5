"""The read API of master data (/api/v1/accounts/, /api/v1/products/), and the record
views every canonical record's endpoints are built from: a cursor-paginated list and a detail
by enterprise id, each record with its crosswalk of external ids."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers

from core.api import (
    DETAIL_ERRORS,
    LIST_ERRORS,
    ConsolePermission,
    Cursor,
    RecordFilters,
    choice_values,
    cursor_ordered,
    slug_ref,
)
from core.records import LineKind
from masterdata.models import Account, AccountStatus, ExternalId, Product, ProductMapping


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


class ExternalIdSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExternalId
        fields = ["system", "object_type", "external_id"]


class WithCrosswalk(serializers.Serializer):
    """The record's ids in every system (attached to the page by the view, one query)."""

    external_ids = ExternalIdSerializer(many=True, read_only=True, source="api_crosswalk")


class RecordList(RecordFilters, generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [ConsolePermission]
    required_permission = ""
    pagination_class = Cursor
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


def record_views(
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
        {
            **attrs,
            "filters": filters,
            "choices": choices,
            "pagination_class": cursor_ordered(*ordering),
        },
    )
    detail_view: Any = type(f"{name}Detail", (RecordDetail,), attrs)
    plural = f"{name.lower()}s"
    list_view = extend_schema_view(
        get=extend_schema(
            tags=[plural],
            operation_id=f"{plural}_list",
            parameters=list_view.schema_parameters(),
            responses={200: serializer(many=True), **LIST_ERRORS},
        )
    )(list_view)
    detail_view = extend_schema_view(
        get=extend_schema(
            tags=[plural],
            operation_id=f"{plural}_retrieve",
            responses={200: serializer, **DETAIL_ERRORS},
        )
    )(detail_view)
    return list_view, detail_view


class AccountSerializer(WithCrosswalk, serializers.ModelSerializer):
    legal_entity = slug_ref("code", allow_null=True)
    merged_into = slug_ref(allow_null=True)
    aliases: Any = serializers.SlugRelatedField(slug_field="alias", many=True, read_only=True)

    class Meta:
        model = Account
        fields = [
            "enterprise_id", "legal_name", "domain", "tax_id", "country", "currency",
            "legal_entity", "address_line1", "address_line2", "city", "postcode", "region",
            "phone", "email", "status", "merged_into", "aliases", "created_at", "updated_at",
            "external_ids",
        ]  # fmt: skip


class ProductMappingSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductMapping
        fields = ["system", "external_id", "external_kind"]


class ProductSerializer(serializers.ModelSerializer):
    mappings = ProductMappingSerializer(many=True, read_only=True)

    class Meta:
        model = Product
        fields = [
            "enterprise_id", "sku", "name", "kind", "billing_period", "is_active", "created_at",
            "updated_at", "mappings",
        ]  # fmt: skip


AccountList, AccountDetail = record_views(
    name="Account",
    serializer=AccountSerializer,
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
    choices={"status": choice_values(AccountStatus)},
    ordering=("enterprise_id",),
)
ProductList, ProductDetail = record_views(
    name="Product",
    serializer=ProductSerializer,
    permission="masterdata.view_product",
    queryset=lambda: Product.objects.prefetch_related("mappings"),
    filters={"kind": "kind", "is_active": "is_active", "sku": "sku"},
    choices={"kind": choice_values(LineKind), "is_active": ["true", "false"]},
    ordering=("sku",),
    crosswalk=False,
)
