"""What every API module stands on: deny-by-default permission, documented error
answers (a service's ``Refused`` becomes a 4xx here, in one place), cursor pagination,
exact-match filters, money as a decimal string with its currency, and the schema views.

Every view names the permission it needs (``required_permission``), the same one the
console's page for those records checks (core.roles).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.urls import resolve, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import Refused


class ConsolePermission(BasePermission):
    """Allow only a signed-in user holding the view's ``required_permission``; a view that
    names none is refused to everyone."""

    message = "your role may not read these records"

    def has_permission(self, request: Request, view: Any) -> bool:
        perm = getattr(view, "required_permission", "")
        user = request.user
        return bool(perm and user and user.is_authenticated and user.has_perm(perm))


ERRORS = {
    400: OpenApiResponse(description="a filter value is not valid"),
    401: OpenApiResponse(description="no valid token or session"),
    403: OpenApiResponse(description="your role may not read these records"),
}
LIST_ERRORS = {**ERRORS, 404: OpenApiResponse(description="the cursor is not valid")}
DETAIL_ERRORS = {
    401: ERRORS[401],
    403: ERRORS[403],
    404: OpenApiResponse(description="no such record"),
}


# A refusal is a 400 unless its kind says otherwise: a lost race is a 409 (read the record
# again and retry), something the input names that does not exist a 404.
REFUSAL_STATUS: dict[Refused.Kind, int] = {
    Refused.Kind.CONFLICT: 409,
    Refused.Kind.NOT_FOUND: 404,
}


def refusal_status(kind: Refused.Kind) -> int:
    """The HTTP status a refusal of ``kind`` is answered with."""
    return REFUSAL_STATUS.get(kind, 400)


class RefusedSerializer(serializers.Serializer):
    """The body of a refused action: what the operator reads, and the kind of refusal."""

    detail = serializers.CharField()
    kind = serializers.ChoiceField(choices=[(kind.value, kind.value) for kind in Refused.Kind])


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a service's ``Refused`` is answered ``{"detail": message, "kind":
    kind}`` with ``refusal_status(kind)``, and the request's transaction is rolled back.
    Anything else DRF does not know stays a 500 with a traceback."""
    if isinstance(exc, Refused):
        set_rollback()
        return Response(
            {"detail": exc.message, "kind": exc.kind.value}, status=refusal_status(exc.kind)
        )
    return drf_exception_handler(exc, context)


class Cursor(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering: Any = ("-created_at", "-id")

    def get_page_size(self, request: Any) -> int | None:
        """``page_size`` as the schema says, an integer (ASCII digits): anything else is a 400
        instead of silently the default; a size out of 1 to 200 is brought within it."""
        value = request.query_params.get(self.page_size_query_param) or None  # "": absent
        if value is not None and not re.fullmatch(r"-?[0-9]+", value):
            raise ValidationError({self.page_size_query_param: ["must be an integer"]})
        if value is not None and int(value) < 1:
            return self.page_size
        return super().get_page_size(request)


def cursor_ordered(*ordering: str) -> type[CursorPagination]:
    """The cursor pagination of ``Cursor`` over another ``ordering`` (unique at its end)."""
    return type("Cursor", (Cursor,), {"ordering": ordering})


def _blank_allowed(choices: list[str] | None) -> list[str] | None:
    """A filter's values as the schema states them: blank is no filter, so it is one of them."""
    if choices is None or "" in choices:
        return choices
    return [*choices, ""]


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
            OpenApiParameter(name, OpenApiTypes.STR, enum=_blank_allowed(cls.choices.get(name)),
                             required=False)
            for name in cls.filters
        ]  # fmt: skip


def choice_values(choices: Any) -> list[str]:
    """The values of a ``TextChoices``, as the ``choices`` of a ``RecordFilters`` filter."""
    return [str(value) for value in choices.values]


class MoneySerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="decimal string, e.g. '250.0000'; never a float")
    currency = serializers.CharField(help_text="ISO 4217 code")


def attr_path(obj: Any, path: str) -> Any:
    """``obj``'s attribute at the dotted ``path`` ("version.contract.currency")."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@extend_schema_field(MoneySerializer)
class MoneyField(serializers.Field):
    """An amount field and the currency beside it (``currency`` may be a dotted path to the
    parent record's, which the prefetch has already cached)."""

    def __init__(self, amount: str, currency: str = "currency", **kwargs: Any) -> None:
        self.amount_attr = amount
        self.currency_attr = currency
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> dict[str, str]:
        amount: Decimal = attr_path(value, self.amount_attr)
        return {
            "amount": format(amount, "f"),
            "currency": str(attr_path(value, self.currency_attr)),
        }


def slug_ref(slug: str = "enterprise_id", **kwargs: Any) -> serializers.SlugRelatedField:
    """A read-only reference to a related record by its enterprise id (or ``slug``)."""
    return serializers.SlugRelatedField(slug_field=slug, read_only=True, **kwargs)


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, for signed-in users and token holders."""

    permission_classes = [IsAuthenticated]


class SchemaDocsView(SpectacularAPIView):
    """The schema rendered by DRF's browsable API (no CDN-hosted documentation UI)."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [BrowsableAPIRenderer, *SpectacularAPIView.renderer_classes]


# The collections under /api/v1/, by URL name, in the order the root lists them.
API_COLLECTIONS = (
    ("quotes", "api-quote-list"),
    ("orders", "api-order-list"),
    ("contracts", "api-contract-list"),
    ("invoices", "api-invoice-list"),
    ("credit_notes", "api-creditnote-list"),
    ("payments", "api-payment-list"),
    ("accounts", "api-account-list"),
    ("products", "api-product-list"),
    ("exceptions", "api-exception-list"),
    ("replays", "api-replay-list"),
    ("audit_history", "api-audit-history"),
)


class ApiRootSerializer(serializers.Serializer):
    collections = serializers.DictField(
        child=serializers.URLField(), help_text="the collections your role may read, by name"
    )
    schema = serializers.URLField()
    docs = serializers.URLField()


@extend_schema(responses={200: ApiRootSerializer, 401: ERRORS[401]})
class ApiRoot(APIView):
    """What the API offers: the collections the caller's role may read, and the schema."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        collections = {}
        for name, url_name in API_COLLECTIONS:
            path = reverse(url_name)
            perm = getattr(resolve(path).func, "view_class", None)
            required = getattr(perm, "required_permission", "")
            if not required or request.user.has_perm(required):
                collections[name] = request.build_absolute_uri(path)
        return Response(
            {
                "collections": collections,
                "schema": request.build_absolute_uri(reverse("api-schema")),
                "docs": request.build_absolute_uri(reverse("api-docs")),
            }
        )
