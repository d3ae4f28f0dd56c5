"""Reads of the canonical commercial records for the console."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from q2c.models import Contract, Invoice, Order


def counts_by_state(model: type[Order] | type[Contract] | type[Invoice]) -> list[dict[str, object]]:
    """[{state, label, count}] for every state of ``model``, zeros included, in state order."""
    choices = model._meta.get_field("state").choices or []
    found = dict(model.objects.values_list("state").annotate(n=Count("pk")).order_by())
    return [
        {"state": value, "label": label, "count": found.get(value, 0)} for value, label in choices
    ]


def order_list(*, state: str | None = None, query: str | None = None) -> QuerySet[Order]:
    qs = Order.objects.select_related("account", "legal_entity").order_by("-created_at")
    if state:
        qs = qs.filter(state=state)
    if query:
        qs = qs.filter(enterprise_id__icontains=query) | qs.filter(
            account__legal_name__icontains=query
        )
    return qs


def contract_list(*, state: str | None = None) -> QuerySet[Contract]:
    qs = Contract.objects.select_related("account", "legal_entity").order_by("-created_at")
    return qs.filter(state=state) if state else qs


def invoice_list(*, state: str | None = None) -> QuerySet[Invoice]:
    qs = Invoice.objects.select_related("account", "legal_entity").order_by("-created_at")
    return qs.filter(state=state) if state else qs
