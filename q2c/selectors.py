"""Reads of the canonical commercial records for the console."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from q2c.models import Contract, Invoice, Order
from q2c.pagination import COUNT_LIMIT


def counts_by_state(
    model: type[Order] | type[Contract] | type[Invoice], *, limit: int = COUNT_LIMIT
) -> list[dict[str, object]]:
    """[{state, label, count, capped}] for every state of ``model``, zeros included, in state
    order. A count stops at ``limit`` (``capped`` is then True), like the lists it links to.

    A GROUP BY over a million orders reads every row (150+ ms); one query of per-state
    ``COUNT(*)`` over ``LIMIT``-ed index scans reads at most ``limit`` entries per state.
    """
    choices = model._meta.get_field("state").choices or []
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name("state")  # an FSMField named and stored as "state"
    counts = ", ".join(
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {column} = %s LIMIT %s) AS s{i})"  # noqa: S608 (names from the model)
        for i in range(len(choices))
    )
    params: list[str | int] = []
    for value, _label in choices:
        params += [value, limit + 1]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}", params)
        found = cursor.fetchone()
    return [
        {"state": value, "label": label, "count": min(n, limit), "capped": n > limit}
        for (value, label), n in zip(choices, found, strict=True)
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
