"""Reads of the canonical commercial records for the console."""

from __future__ import annotations

import re

from django.db import connection
from django.db.models import Q, QuerySet

from masterdata.models import Account
from q2c.models import Contract, Invoice, Order
from q2c.pagination import COUNT_LIMIT

# A whole enterprise id (ORD-000123): looked up exactly. Its trigrams ("ORD", "RD-", "D-0")
# are in every order, so a trigram search for it reads the whole index (500+ ms at 730k).
ENTERPRISE_ID = re.compile(r"^[A-Za-z]{2,4}-\d{6,}$")
# Up to this many customers matching a search are passed to the order query as a list of ids.
ACCOUNTS_INLINED = 5000


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
    if query and ENTERPRISE_ID.match(query):
        qs = qs.filter(enterprise_id=query.upper())
    elif query:
        qs = qs.filter(Q(enterprise_id__icontains=query) | _orders_of_accounts_named(query))
    return qs


def _orders_of_accounts_named(query: str) -> Q:
    """Orders whose customer's name contains ``query``.

    The matching account ids are read first (trigram index) and inlined: beside the
    enterprise-id condition, ``account_id IN (ids)`` lets PostgreSQL combine two indexes or
    walk the newest orders, where an OR across the join to the accounts read every order
    (3.5 s for one order id at a million orders). A name matching more customers than
    ``ACCOUNTS_INLINED`` falls back to a subquery: slower, never incomplete.
    """
    names = Account.objects.filter(legal_name__icontains=query).order_by()
    ids = list(names.values_list("pk", flat=True)[: ACCOUNTS_INLINED + 1])
    if len(ids) > ACCOUNTS_INLINED:
        return Q(account__in=names.values("pk"))
    return Q(account_id__in=ids)


def contract_list(*, state: str | None = None) -> QuerySet[Contract]:
    qs = Contract.objects.select_related("account", "legal_entity").order_by("-created_at")
    return qs.filter(state=state) if state else qs


def invoice_list(*, state: str | None = None) -> QuerySet[Invoice]:
    qs = Invoice.objects.select_related("account", "legal_entity").order_by("-created_at")
    return qs.filter(state=state) if state else qs
