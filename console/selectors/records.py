"""Reads of the canonical commercial records for the console.

"Stuck" means a record has sat in a non-final state longer than that state's SLA
(``settings.ORDER_STATE_SLA_MINUTES`` / ``CONTRACT_STATE_SLA_MINUTES``). It is decided from
``state_changed_at`` (kept by every transition) so the lists and the dashboard filter on the
``(state, state_changed_at)`` index instead of reading history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.pagination import COUNT_LIMIT
from exceptions.models import OPEN_STATES, OperationalException
from masterdata.models import Account, ExternalId
from q2c.models import Contract, Invoice, Order, OrderState, Quote

StatefulModel = type[Order] | type[Contract]

# Time in state, as the dashboard buckets it and the lists filter it: (key, label, from, to).
AGE_BUCKETS: list[tuple[str, str, dt.timedelta, dt.timedelta | None]] = [
    ("lt1h", "< 1 h", dt.timedelta(0), dt.timedelta(hours=1)),
    ("1h-4h", "1-4 h", dt.timedelta(hours=1), dt.timedelta(hours=4)),
    ("4h-24h", "4-24 h", dt.timedelta(hours=4), dt.timedelta(hours=24)),
    ("1d-7d", "1-7 d", dt.timedelta(days=1), dt.timedelta(days=7)),
    ("gt7d", "> 7 d", dt.timedelta(days=7), None),
]
AGE_KEYS = [key for key, *_ in AGE_BUCKETS]

# The most accounts a search by name, and the most records a search, may match: a search
# is for finding a deal, not for listing thousands (filters do that).
SEARCH_ACCOUNT_LIMIT = 500
SEARCH_MATCH_LIMIT = 5000


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


def state_sla(model: StatefulModel) -> dict[str, dt.timedelta]:
    """How long a record of ``model`` may stay in each state before it is stuck."""
    minutes = (
        settings.ORDER_STATE_SLA_MINUTES if model is Order else settings.CONTRACT_STATE_SLA_MINUTES
    )
    return {state: dt.timedelta(minutes=value) for state, value in minutes.items()}


def stuck_q(model: StatefulModel, *, now: dt.datetime) -> Q:
    """Records in a state with an SLA that entered it more than the SLA ago."""
    q = Q(pk__in=[])
    for state, sla in state_sla(model).items():
        q |= Q(state=state, state_changed_at__lt=now - sla)
    return q


def is_stuck(record: Order | Contract, *, now: dt.datetime) -> bool:
    """Whether ``record`` has been in its state longer than that state's SLA at ``now``."""
    sla = state_sla(type(record)).get(record.state)
    return sla is not None and record.state_changed_at < now - sla


def age_q(bucket: str, *, now: dt.datetime) -> Q:
    """Records whose time in their state falls in the age bucket ``bucket``."""
    for key, _label, low, high in AGE_BUCKETS:
        if key == bucket:
            q = Q(state_changed_at__lte=now - low)
            return q & Q(state_changed_at__gt=now - high) if high is not None else q
    raise ValueError(f"unknown age bucket {bucket!r}")


@dataclass(frozen=True)
class RecordFilters:
    """What an order or contract list is narrowed to; empty values mean "any"."""

    state: str = ""
    stuck: bool = False
    age: str = ""
    legal_entity: str = ""  # the entity's code
    currency: str = ""
    account: str = ""  # the account's enterprise id
    system: str = ""  # a system with an open exception on the deal
    query: str = ""
    sort: str = ""


ORDER_SORTS: dict[str, tuple[str, ...]] = {
    "-created": ("-created_at", "-pk"),
    "created": ("created_at", "pk"),
    "in_state": ("state_changed_at", "pk"),  # longest in its state first
    "-total": ("-total_amount", "-pk"),
    "total": ("total_amount", "pk"),
    "id": ("enterprise_id",),
}
CONTRACT_SORTS: dict[str, tuple[str, ...]] = {
    "-created": ("-created_at", "-pk"),
    "created": ("created_at", "pk"),
    "in_state": ("state_changed_at", "pk"),
    "end": ("end_date", "pk"),
    "id": ("enterprise_id",),
}


def _common(qs: QuerySet, model: StatefulModel, filters: RecordFilters, now: dt.datetime):  # type: ignore[no-untyped-def, type-arg]
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.stuck:
        qs = qs.filter(stuck_q(model, now=now))
    if filters.age:
        qs = qs.filter(age_q(filters.age, now=now))
    if filters.legal_entity:
        qs = qs.filter(legal_entity__code=filters.legal_entity)
    if filters.currency:
        qs = qs.filter(currency=filters.currency)
    if filters.account:
        qs = qs.filter(account__enterprise_id=filters.account)
    return qs


def _open_exception_orders(system: str) -> QuerySet[OperationalException]:
    return OperationalException.objects.filter(
        state__in=OPEN_STATES, system=system, order__isnull=False
    ).values("order_id")


def _search_accounts(query: str, enterprise_ids: list[str]) -> list[int]:
    """Accounts with one of ``enterprise_ids`` or whose name contains ``query`` (capped)."""
    return list(
        Account.objects.filter(
            Q(enterprise_id__in=enterprise_ids) | Q(legal_name__icontains=query)
        ).values_list("pk", flat=True)[:SEARCH_ACCOUNT_LIMIT]
    )


def _search_keys(query: str) -> tuple[list[str], list[int]]:
    """The enterprise ids ``query`` names (itself, or any system's id for a record in the
    crosswalk) and the accounts it names (2 queries)."""
    enterprise_ids = [
        query.upper(),
        *ExternalId.objects.filter(external_id=query).values_list("enterprise_id", flat=True),
    ]
    return enterprise_ids, _search_accounts(query, enterprise_ids)


def order_search_q(query: str) -> Q:
    """Orders matching a business key: their enterprise id, the CPQ quote id, any external
    id in the crosswalk (of the order or its account), an invoice number, the account's
    enterprise id or name.

    The keys are resolved first and each branch is its own indexed lookup, joined by UNION;
    the matching ids are read (a third query) so the page is then read by primary key:
    PostgreSQL would otherwise walk the whole ``created_at`` index testing each order
    against the union.
    """
    enterprise_ids, account_ids = _search_keys(query)
    matches = (
        Order.objects.filter(enterprise_id__in=enterprise_ids)
        .values_list("pk", flat=True)
        .order_by()
    ).union(
        Order.objects.filter(account_id__in=account_ids).values_list("pk", flat=True).order_by(),
        Order.objects.filter(quote__cpq_quote_id=query).values_list("pk", flat=True).order_by(),
        Invoice.objects.filter(number=query, order__isnull=False)
        .values_list("order_id", flat=True)
        .order_by(),
        all=True,
    )
    return Q(pk__in=list(matches[:SEARCH_MATCH_LIMIT]))


def contract_search_q(query: str) -> Q:
    """Contracts matching a business key: their enterprise id, their order's enterprise id or
    CPQ quote id, any external id in the crosswalk, an invoice number, the account."""
    enterprise_ids, account_ids = _search_keys(query)
    matches = (
        Contract.objects.filter(enterprise_id__in=enterprise_ids)
        .values_list("pk", flat=True)
        .order_by()
    ).union(
        Contract.objects.filter(order__enterprise_id__in=enterprise_ids)
        .values_list("pk", flat=True)
        .order_by(),
        Contract.objects.filter(account_id__in=account_ids).values_list("pk", flat=True).order_by(),
        Contract.objects.filter(order__quote__cpq_quote_id=query)
        .values_list("pk", flat=True)
        .order_by(),
        Invoice.objects.filter(number=query, contract__isnull=False)
        .values_list("contract_id", flat=True)
        .order_by(),
        all=True,
    )
    return Q(pk__in=list(matches[:SEARCH_MATCH_LIMIT]))


def order_list(*, filters: RecordFilters, now: dt.datetime | None = None) -> QuerySet[Order]:
    """Orders matching ``filters`` (state, age, stuck, system with an open exception, a
    search), in the chosen sort, with their account and legal entity (one query per page)."""
    now = now or timezone.now()
    qs = _common(Order.objects.select_related("account", "legal_entity"), Order, filters, now)
    if filters.system:
        qs = qs.filter(pk__in=_open_exception_orders(filters.system))
    if filters.query:
        qs = qs.filter(order_search_q(filters.query))
    return qs.order_by(*ORDER_SORTS.get(filters.sort, ORDER_SORTS["-created"]))


def held_orders_explain(orders: list[Order]) -> None:
    """Say why each held order in ``orders`` is stuck: its oldest open exception
    (``open_exception``) and, while no account is resolved, the customer the quote names
    (``unresolved_customer``). One query when a held order is among them (two when one has
    no account yet), else none."""
    held = [order for order in orders if order.state == OrderState.ON_HOLD]
    if not held:
        return
    first_open: dict[int, OperationalException] = {}
    for exc in OperationalException.objects.filter(
        order_id__in=[order.pk for order in held], state__in=OPEN_STATES
    ).order_by("pk"):
        first_open.setdefault(exc.order_id, exc)  # type: ignore[arg-type]
    unresolved = [order.quote_id for order in held if order.account_id is None and order.quote_id]
    names = {
        pk: str((snapshot or {}).get("name") or "")
        for pk, snapshot in Quote.objects.filter(pk__in=unresolved).values_list(
            "pk", "customer_snapshot"
        )
    } if unresolved else {}  # fmt: skip
    for order in held:
        order.open_exception = first_open.get(order.pk)  # type: ignore[attr-defined]
        order.unresolved_customer = names.get(order.quote_id, "")  # type: ignore[attr-defined]


def contract_list(*, filters: RecordFilters, now: dt.datetime | None = None) -> QuerySet[Contract]:
    """Contracts matching ``filters``, as ``order_list`` does for orders."""
    now = now or timezone.now()
    qs = _common(Contract.objects.select_related("account", "legal_entity"), Contract, filters, now)
    if filters.system:
        qs = qs.filter(order_id__in=_open_exception_orders(filters.system))
    if filters.query:
        qs = qs.filter(contract_search_q(filters.query))
    return qs.order_by(*CONTRACT_SORTS.get(filters.sort, CONTRACT_SORTS["-created"]))


@dataclass(frozen=True)
class InvoiceDetail:
    """An invoice with what happened to it: payments (failed ones too), credit notes and
    refunds, and the ERP's receivable id of each that was posted there."""

    invoice: Invoice
    erp_id: str  # "" until posted
    payments: list[tuple[Any, str]]  # (payment, its ERP id or "")
    credit_notes: list[tuple[Any, str]]
    refunds: list[tuple[Any, str]]


def invoice_detail(*, enterprise_id: str) -> InvoiceDetail | None:
    """The invoice ``enterprise_id`` (None when there is none) with its payments, credit
    notes and refunds, oldest first, and their ERP ids. A fixed number of queries."""
    invoice = (
        Invoice.objects.select_related(
            "account", "legal_entity", "contract", "contract_version", "order"
        )
        .filter(enterprise_id=enterprise_id)
        .first()
    )
    if invoice is None:
        return None
    payments = list(invoice.payments.order_by("received_at", "pk"))
    credit_notes = list(invoice.credit_notes.order_by("created_at", "pk"))
    refunds = list(invoice.refunds.select_related("payment").order_by("refunded_at", "pk"))
    ids = [invoice.enterprise_id] + [
        record.enterprise_id for record in (*payments, *credit_notes, *refunds)
    ]
    erp_ids = dict(
        ExternalId.objects.filter(
            system="erp",
            object_type__in=["receivable_invoice", "customer_payment", "credit_memo",
                             "customer_refund"],
            enterprise_id__in=ids,
        ).values_list("enterprise_id", "external_id")
    )  # fmt: skip
    return InvoiceDetail(
        invoice=invoice,
        erp_id=erp_ids.get(invoice.enterprise_id, ""),
        payments=[(p, erp_ids.get(p.enterprise_id, "")) for p in payments],
        credit_notes=[(n, erp_ids.get(n.enterprise_id, "")) for n in credit_notes],
        refunds=[(r, erp_ids.get(r.enterprise_id, "")) for r in refunds],
    )


def invoice_list(*, state: str | None = None) -> QuerySet[Invoice]:
    """Invoices newest first (in ``state`` when given), with account and legal entity."""
    qs = Invoice.objects.select_related("account", "legal_entity").order_by("-created_at")
    return qs.filter(state=state) if state else qs
