"""Both sides of a reconciliation as rows: Tandem's read in bulk (one streamed query per kind
of record, the crosswalk joined in the database), each system's read page by page through its
listing (``BillingListing`` / ``ErpListing``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, OuterRef, QuerySet, Subquery, Sum

from core.money import ISO_4217
from masterdata.models import ExternalId
from orchestration.connectors.interfaces import RemotePage, RemoteRecord
from orchestration.reconciliation.compare import ZERO, RemoteRow, Spec, TandemRow
from q2c.models import (
    Contract,
    ContractLine,
    ContractState,
    Invoice,
    InvoiceState,
    Order,
    OrderLine,
    OrderState,
    VersionState,
)

CHUNK = 10000  # rows per fetch from the database; keys per IN (...) list


def _chunks(values: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _money(value: Any) -> Decimal:
    return value if value.__class__ is Decimal else Decimal(str(value or "0"))


# --- what agrees with what ----------------------------------------------------------------

_INVOICE_STATUS: dict[str, set[str]] = {
    InvoiceState.DRAFT: {"draft"},
    InvoiceState.POSTED: {"open"},
    InvoiceState.PARTIALLY_PAID: {"open"},
    InvoiceState.PAID: {"paid"},
    InvoiceState.VOID: {"void"},
}
_LIVE_SUBSCRIPTION = {"active", "trialing", "past_due", "incomplete"}
_CONTRACT_STATUS: dict[str, set[str]] = {
    ContractState.PENDING_ACTIVATION: _LIVE_SUBSCRIPTION,
    ContractState.ACTIVE: _LIVE_SUBSCRIPTION,
    ContractState.RENEWED: _LIVE_SUBSCRIPTION,
    ContractState.EXPIRED: {"canceled", "incomplete_expired", "canceling"},
    # "canceling": cancelled at term end, the subscription runs out its last period.
    ContractState.CANCELLED: {"canceled", "incomplete_expired", "canceling"},
}
_ACCEPTED = {"pendingFulfillment", "fullyBilled"}
_ORDER_STATUS: dict[str, set[str]] = {
    OrderState.RECEIVED: {"pendingApproval"},
    OrderState.VALIDATED: {"pendingApproval"},
    OrderState.SUBMITTED_TO_ERP: {"pendingApproval", *_ACCEPTED},
    OrderState.ACCEPTED: _ACCEPTED,
    OrderState.PROVISIONING: _ACCEPTED,
    OrderState.ACTIVE: _ACCEPTED,
    OrderState.FULFILLED: _ACCEPTED,
    OrderState.REJECTED: {"cancelled", "pendingApproval"},
    OrderState.CANCELLED: {"cancelled"},
}


def _agrees(table: Mapping[str, set[str]]) -> Callable[[str, str], bool]:
    def agrees(tandem: str, remote: str) -> bool:
        if tandem == OrderState.ON_HOLD:  # held: whatever the ERP says until it is released
            return True
        return remote in table.get(tandem, set())

    return agrees


INVOICE_SPECS = {
    system: Spec(
        system=system,
        object_type="invoice",
        status_agrees=_agrees(_INVOICE_STATUS),
        compare_tax=True,
        compare_paid=True,
        duplicate_same_amount=True,
    )
    for system in ("billing", "erp")
}
SUBSCRIPTION_SPEC = Spec(
    system="billing", object_type="subscription", status_agrees=_agrees(_CONTRACT_STATUS),
    amount_type="version",
)  # fmt: skip
SALES_ORDER_SPEC = Spec(
    system="erp", object_type="sales_order", status_agrees=_agrees(_ORDER_STATUS)
)


# --- Tandem's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class TandemSource:
    """Tandem's rows of one kind for one system: all (or changed since), by the system's
    ids they are linked to, or by the references the system's records carry."""

    rows: Callable[[dt.datetime | None], Iterable[TandemRow]]
    by_keys: Callable[[set[str]], Iterable[TandemRow]]
    by_references: Callable[[set[str]], Iterable[TandemRow]]


# The crosswalk's object types that pair a Tandem record with one kind of a system's record:
# an invoice mirrored from billing is posted to the ERP's receivables as an ERP invoice
# (``receivable_invoice``), which is that invoice's ERP record as much as a mirrored one is.
LINK_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("erp", "invoice"): ("invoice", "receivable_invoice"),
}


def _link_types(system: str, object_type: str) -> tuple[str, ...]:
    return LINK_TYPES.get((system, object_type), (object_type,))


def _linked(model: type[Model], system: str, object_type: str) -> Subquery:
    content_type = ContentType.objects.get_for_model(model)
    return Subquery(
        ExternalId.objects.filter(
            system=system, object_type__in=_link_types(system, object_type),
            content_type=content_type, object_id=OuterRef("pk"),
        ).values("external_id")[:1]
    )  # fmt: skip


def _keys_to_pks(model: type[Model], system: str, object_type: str, keys: set[str]) -> list[int]:
    content_type = ContentType.objects.get_for_model(model)
    pks: list[int] = []
    for chunk in _chunks(keys):
        pks.extend(
            ExternalId.objects.filter(
                system=system, object_type__in=_link_types(system, object_type),
                content_type=content_type, external_id__in=chunk,
            ).values_list("object_id", flat=True)
        )  # fmt: skip
    return pks


_INVOICE_FIELDS = (
    "key", "enterprise_id", "order__enterprise_id", "contract__enterprise_id", "currency",
    "total_amount", "tax_amount", "amount_paid", "state", "issue_date", "legal_entity__code",
)  # fmt: skip


def invoice_group(issue_date: Any) -> str:
    """Two invoices of one order issued the same day (for the same amount: the spec says
    so) are one invoice twice."""
    return str(issue_date or "")


def _invoice_rows(queryset: QuerySet[Invoice], system: str) -> Iterator[TandemRow]:
    linked = _linked(Invoice, system, "invoice")
    values = queryset.annotate(key=linked).values_list(*_INVOICE_FIELDS)
    for key, ref, order, contract, currency, total, tax, paid, state, issued, le in values.iterator(
        chunk_size=CHUNK
    ):
        yield TandemRow(
            key or "", ref, order or contract or "", currency, _money(total), state,
            _money(tax), _money(paid), invoice_group(issued), le or "",
        )  # fmt: skip


def invoice_source(system: str) -> TandemSource:
    """Tandem's invoices mirrored from ``system`` (linked to its invoice ids)."""
    content_type_id = ContentType.objects.get_for_model(Invoice).pk
    mirrored = Invoice.objects.filter(
        pk__in=ExternalId.objects.filter(
            system=system,
            object_type__in=_link_types(system, "invoice"),
            content_type_id=content_type_id,
        ).values("object_id")
    )

    def rows(since: dt.datetime | None) -> Iterable[TandemRow]:
        queryset = mirrored if since is None else mirrored.filter(updated_at__gte=since)
        return _invoice_rows(queryset.order_by(), system)

    def by_keys(keys: set[str]) -> Iterable[TandemRow]:
        pks = _keys_to_pks(Invoice, system, "invoice", keys)
        return _invoice_rows(Invoice.objects.filter(pk__in=pks).order_by(), system)

    def by_references(references: set[str]) -> Iterable[TandemRow]:
        found: list[TandemRow] = []
        for chunk in _chunks(references):
            found.extend(
                _invoice_rows(mirrored.filter(order__enterprise_id__in=chunk).order_by(), system)
            )
        return found

    return TandemSource(rows=rows, by_keys=by_keys, by_references=by_references)


def _unit_slack(quantity: Any, currency: str) -> Decimal:
    """What pricing each of ``quantity`` units at a rate rounded to the currency's minor
    unit can move a line's amount by: half a minor unit per unit."""
    return _money(quantity) * Decimal(1).scaleb(-ISO_4217.get(currency, 2)) / 2


def _contract_amounts(contract_pks: list[int]) -> dict[int, dict[str, tuple[Decimal, Decimal]]]:
    """Each contract's active version: its recurring amount and quantity per billing period."""
    amounts: dict[int, dict[str, tuple[Decimal, Decimal]]] = {}
    for chunk in _chunks([str(pk) for pk in contract_pks]):
        rows = (
            ContractLine.objects.filter(
                version__contract_id__in=chunk, version__state=VersionState.ACTIVE,
                kind="recurring",
            )
            .values_list("version__contract_id", "billing_period")
            .annotate(total=Sum("amount"), units=Sum("quantity"))
            .order_by()
        )  # fmt: skip
        for contract_id, period, total, units in rows:
            amounts.setdefault(contract_id, {})[period] = (_money(total), _money(units))
    return amounts


def _subscription_rows(
    contracts: QuerySet[Contract], *, unlinked_live: bool
) -> Iterator[TandemRow]:
    """One row per billing subscription a contract is linked to (and, when
    ``unlinked_live``, one without a key for a live contract linked to none)."""
    content_type = ContentType.objects.get_for_model(Contract)
    picked = {
        pk: (ref, order, currency, state, le)
        for pk, ref, order, currency, state, le in contracts.values_list(
            "pk", "enterprise_id", "order__enterprise_id", "currency", "state",
            "legal_entity__code",
        ).iterator(chunk_size=CHUNK)
    }  # fmt: skip
    amounts = _contract_amounts(list(picked))
    links: dict[int, list[str]] = {}
    for chunk in _chunks([str(pk) for pk in picked]):
        for external_id, object_id in ExternalId.objects.filter(
            system="billing", object_type="subscription", content_type=content_type,
            object_id__in=chunk,
        ).values_list("external_id", "object_id"):  # fmt: skip
            links.setdefault(object_id, []).append(external_id)
    for pk, (ref, order, currency, state, le) in picked.items():
        by_period = amounts.get(pk, {})
        # One period: the subscription carries all of it; several: one subscription each,
        # and which is which is the system's to say (the row's group), so status only.
        amount, units = next(iter(by_period.values())) if len(by_period) == 1 else (None, ZERO)
        period = next(iter(by_period)) if len(by_period) == 1 else ""
        keys = links.get(pk, [])
        if not keys and unlinked_live and state in (ContractState.ACTIVE, ContractState.RENEWED):
            keys = [""]
        for key in keys:
            yield TandemRow(
                key=key, ref=ref, reference=order or ref, currency=currency,
                amount=amount if amount is not None else Decimal(-1), status=state,
                group=period, legal_entity=le or "", slack=_unit_slack(units, currency),
            )  # fmt: skip


def subscription_source() -> TandemSource:
    """Tandem's contracts as billing subscriptions."""

    def rows(since: dt.datetime | None) -> Iterable[TandemRow]:
        contracts = Contract.objects.order_by()
        if since is not None:
            contracts = contracts.filter(updated_at__gte=since)
        return _subscription_rows(contracts, unlinked_live=since is None)

    def by_keys(keys: set[str]) -> Iterable[TandemRow]:
        pks = _keys_to_pks(Contract, "billing", "subscription", keys)
        rows = _subscription_rows(Contract.objects.filter(pk__in=pks), unlinked_live=False)
        return [row for row in rows if row.key in keys]

    def by_references(references: set[str]) -> Iterable[TandemRow]:
        found: list[TandemRow] = []
        for chunk in _chunks(references):
            contracts = Contract.objects.filter(order__enterprise_id__in=chunk)
            found.extend(_subscription_rows(contracts, unlinked_live=False))
        return found

    return TandemSource(rows=rows, by_keys=by_keys, by_references=by_references)


_IN_ERP = [
    OrderState.ACCEPTED, OrderState.PROVISIONING, OrderState.ACTIVE, OrderState.FULFILLED,
]  # fmt: skip


def _order_rows(orders: QuerySet[Order], *, unlinked_accepted: bool) -> Iterator[TandemRow]:
    linked = _linked(Order, "erp", "sales_order")
    units = Subquery(
        OrderLine.objects.filter(order=OuterRef("pk"))
        .values("order")
        .annotate(units=Sum("quantity"))
        .values("units")[:1]
    )
    values = orders.annotate(key=linked, units=units).values_list(
        "key", "enterprise_id", "currency", "total_amount", "state", "legal_entity__code", "units"
    )
    for key, ref, currency, total, state, le, quantity in values.iterator(chunk_size=CHUNK):
        if not key and not (unlinked_accepted and state in _IN_ERP):
            continue
        yield TandemRow(
            key=key or "", ref=ref, reference=ref, currency=currency, amount=_money(total),
            status=state, legal_entity=le or "", slack=_unit_slack(quantity, currency),
        )  # fmt: skip


def sales_order_source() -> TandemSource:
    """Tandem's orders as ERP sales orders (every order the ERP accepted must be there)."""

    def rows(since: dt.datetime | None) -> Iterable[TandemRow]:
        orders = Order.objects.order_by()
        if since is not None:
            orders = orders.filter(updated_at__gte=since)
        return _order_rows(orders, unlinked_accepted=since is None)

    def by_keys(keys: set[str]) -> Iterable[TandemRow]:
        pks = _keys_to_pks(Order, "erp", "sales_order", keys)
        return _order_rows(Order.objects.filter(pk__in=pks), unlinked_accepted=False)

    def by_references(references: set[str]) -> Iterable[TandemRow]:
        found: list[TandemRow] = []
        for chunk in _chunks(references):
            orders = Order.objects.filter(enterprise_id__in=chunk)
            found.extend(_order_rows(orders, unlinked_accepted=False))
        return found

    return TandemSource(rows=rows, by_keys=by_keys, by_references=by_references)


# --- the systems' side --------------------------------------------------------------------


def remote_invoice(record: RemoteRecord) -> RemoteRow:
    data: Any = record.data
    total = _money(data["total"])
    return RemoteRow(
        key=record.id, reference=str(data.get("reference") or "").split(":", 1)[0],
        currency=str(data["currency"]), amount=total, tax=_money(data.get("tax")),
        paid=_money(data.get("amount_paid")), status=record.status,
        group=invoice_group(data.get("issue_date")), number=record.number,
    )  # fmt: skip


def remote_subscription(record: RemoteRecord) -> RemoteRow:
    data = record.data
    return RemoteRow(
        key=record.id, reference=str(data.get("reference") or "").split(":", 1)[0],
        currency=str(data["currency"]), amount=_money(data.get("amount")),
        status=record.status, group=str(data.get("period") or ""),
    )  # fmt: skip


def remote_sales_order(record: RemoteRecord) -> RemoteRow:
    data = record.data
    return RemoteRow(
        key=record.id, reference=str(data.get("reference") or ""),
        currency=str(data["currency"]), amount=_money(data.get("total")),
        status=record.status, number=record.number,
    )  # fmt: skip


def remote_pages(
    lister: Callable[..., RemotePage],
    convert: Callable[[RemoteRecord], RemoteRow],
    since: dt.datetime | None,
) -> Iterator[list[RemoteRow]]:
    """Every page of a listing, converted, following its cursor to the end."""
    cursor = ""
    while True:
        page = lister(updated_since=since, cursor=cursor)
        yield [convert(record) for record in page.records]
        if not page.cursor:
            return
        cursor = page.cursor
