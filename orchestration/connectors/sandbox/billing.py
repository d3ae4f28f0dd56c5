"""``BillingApi`` for the sandbox's Stripe-Billing-like system (JSON bodies, minor units).

Stripe objects have no external id, so the Tandem reference travels in ``metadata`` and
``*_find`` lists with a ``metadata[...]`` filter: customers carry ``tandem_account``; a
subscription carries its reference under the key of the reference's kind
(``tandem_contract`` for ``CTR-…``, otherwise ``tandem_order``) and, when given, the
contract's reference as ``tandem_contract`` (billing's ``subscription.activated`` names the
contract). Prices are found by ``lookup_key``. Amounts go out as integer minor units
computed from the Decimal with the currency's ISO 4217 minor units, never through a float.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any, cast

from core.money import ISO_4217
from orchestration.connectors.billing_common import (
    ACCOUNT_KEY,
    AMENDMENT_KEY,
    CONTRACT_KEY,
    INTERVALS,
    ORDER_KEY,
    interval_check,
    price_describe,
    recurring_of,
    reference_key,
    subscription_metadata,
    whole_quantity,
)
from orchestration.connectors.errors import PermanentError
from orchestration.connectors.interfaces import (
    BillingApi,
    BillingListing,
    CustomerUpdating,
    Party,
    RemotePage,
    RemoteRecord,
)
from orchestration.connectors.minor_units import decimal_from_minor_units, minor_units_from
from orchestration.connectors.transport import Transport

SYSTEM = "billing"
CANCELING = "canceling"  # a listed subscription that ends at its period's end


class SandboxBilling:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)

    # --- customers ----------------------------------------------------------------------
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        """The oldest customer with ``metadata[tandem_account]`` = ``reference``
        (``BillingApi.customer_find``).
        """
        found = self._search("customer_find", "customers", {f"metadata[{ACCOUNT_KEY}]": reference})
        return customer_record(found) if found is not None else None

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        """Create the customer with the reference (and tax id) in its metadata
        (``BillingApi.customer_create``); ``idempotency_key`` goes out as the header.
        """
        metadata = {ACCOUNT_KEY: party.reference}
        if party.tax_id:
            metadata["tax_id"] = party.tax_id
        body: dict[str, Any] = {"name": party.name, "metadata": metadata}
        if party.email:
            body["email"] = party.email
        body["address"] = {
            "line1": party.address_line1 or None,
            "city": party.city or None,
            "postal_code": party.postcode or None,
            "country": party.country.upper(),
        }
        response = self.transport.call(
            operation="customer_create",
            method="POST",
            path="customers",
            json=body,
            idempotency_key=idempotency_key,
        )
        return customer_record(response.body)

    def customer_update(
        self, *, customer_id: str, party: Party, idempotency_key: str
    ) -> RemoteRecord:
        """Set the customer's name, email, tax id (metadata) and address
        (``CustomerUpdating``); the same values again change nothing."""
        metadata = {ACCOUNT_KEY: party.reference, "tax_id": party.tax_id or ""}
        body: dict[str, Any] = {
            "name": party.name,
            "email": party.email or None,
            "metadata": metadata,
            "address": {
                "line1": party.address_line1 or None,
                "city": party.city or None,
                "postal_code": party.postcode or None,
                "country": party.country.upper(),
            },
        }
        response = self.transport.call(
            operation="customer_update",
            method="POST",
            path=("customers", customer_id),
            json=body,
            idempotency_key=idempotency_key,
        )
        return customer_record(response.body)

    # --- prices -------------------------------------------------------------------------
    def price_ensure(
        self,
        *,
        lookup_key: str,
        product_name: str,
        currency: str,
        unit_amount: Decimal,
        interval: str,
        idempotency_key: str,
        usage_type: str = "licensed",
    ) -> RemoteRecord:
        """The price with ``lookup_key``, created (with its product) when there is none.

        A price that exists under that key with another amount, currency or interval is
        refused with ``PermanentError`` (kind ``conflict``): the mapping is wrong, and billing
        a customer at the wrong price is never the way out. ``interval`` is one of ``day``,
        ``week``, ``month``, ``quarter``, ``year``, or ``""`` for a one-time price.
        """
        recurring = interval_check(interval)
        if usage_type not in ("licensed", "metered") or (usage_type == "metered" and not recurring):
            raise PermanentError(
                f"usage type {usage_type!r} is not licensed, or metered with an interval",
                system=SYSTEM,
                kind="validation",
            )
        wanted: dict[str, Any] = {
            "currency": currency.lower(),
            "unit_amount": minor_units_from(unit_amount, currency, system=SYSTEM),
            "recurring": recurring,
            "usage_type": usage_type if recurring else None,
        }
        existing = self._price_lookup(lookup_key)
        if existing is None:
            try:
                response = self.transport.call(
                    operation="price_create",
                    method="POST",
                    path="prices",
                    json=_price_body(lookup_key, product_name, wanted),
                    idempotency_key=idempotency_key,
                )
            except PermanentError:
                # Another worker may have created it between our lookup and our create.
                existing = self._price_lookup(lookup_key)
                if existing is None:
                    raise
            else:
                return price_record(response.body)
        _price_same_or_conflict(existing, lookup_key, wanted)
        return price_record(existing)

    def _price_lookup(self, lookup_key: str) -> dict[str, Any] | None:
        response = self.transport.call(
            operation="price_find",
            method="GET",
            path="prices",
            params={"lookup_keys[]": lookup_key},
        )
        found = response.body["data"]
        return found[0] if found else None

    # --- subscriptions ------------------------------------------------------------------
    def subscription_find(self, *, reference: str) -> RemoteRecord | None:
        """The oldest subscription carrying ``reference`` under its kind's metadata key
        (``BillingApi.subscription_find``).
        """
        found = self._search(
            "subscription_find",
            "subscriptions",
            {f"metadata[{reference_key(reference)}]": reference},
        )
        return subscription_record(found) if found is not None else None

    def subscription_create(
        self,
        *,
        reference: str,
        customer_id: str,
        items: list[tuple[str, Decimal]],
        idempotency_key: str,
        contract_reference: str = "",
    ) -> RemoteRecord:
        """Subscribe the customer (``BillingApi.subscription_create``); billing activates it and
        issues its first invoice at once.
        """
        metadata = subscription_metadata(reference, contract_reference)
        body = {
            "customer": customer_id,
            "items": [
                {"price": price_id, "quantity": whole_quantity(quantity)}
                for price_id, quantity in items
            ],
            "metadata": metadata,
        }
        response = self.transport.call(
            operation="subscription_create",
            method="POST",
            path="subscriptions",
            json=body,
            idempotency_key=idempotency_key,
        )
        return subscription_record(response.body)

    def subscription_get(self, *, subscription_id: str) -> RemoteRecord:
        """The subscription ``subscription_id`` (``BillingApi.subscription_get``)."""
        response = self.transport.call(
            operation="subscription_get", method="GET", path=("subscriptions", subscription_id)
        )
        return subscription_record(response.body)

    def subscription_update(
        self,
        *,
        subscription_id: str,
        items: list[tuple[str, Decimal]],
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> RemoteRecord:
        """Amend a subscription to exactly ``items`` (price id, quantity), with prorations:
        an item whose price stays keeps its id, items no longer wanted are deleted."""
        current = self.subscription_get(subscription_id=subscription_id)
        price_ids = cast(list[str], current.data["price_ids"])
        by_price = dict(zip(price_ids, cast(list[str], current.data["item_ids"]), strict=True))
        changes: list[dict[str, Any]] = []
        for price_id, quantity in items:
            if price_id in by_price:
                changes.append({"id": by_price[price_id], "quantity": whole_quantity(quantity)})
            else:
                changes.append({"price": price_id, "quantity": whole_quantity(quantity)})
        wanted = {price_id for price_id, _ in items}
        changes += [
            {"id": item_id, "deleted": True}
            for price_id, item_id in by_price.items()
            if price_id not in wanted
        ]
        body: dict[str, Any] = {"items": changes, "proration_behavior": "create_prorations"}
        if metadata:
            body["metadata"] = metadata
        response = self.transport.call(
            operation="subscription_update",
            method="POST",
            path=("subscriptions", subscription_id),
            json=body,
            idempotency_key=idempotency_key,
        )
        return subscription_record(response.body)

    def subscription_cancel(
        self,
        *,
        subscription_id: str,
        idempotency_key: str,
        prorate: bool = True,
        at_period_end: bool = False,
    ) -> RemoteRecord:
        """Cancel the subscription now (``BillingApi.subscription_cancel``), the unused time
        credited on a final invoice when ``prorate``; billing answers a cancelled one
        unchanged. ``at_period_end`` marks it ``cancel_at_period_end`` instead.
        """
        if at_period_end:
            marked = self.transport.call(
                operation="subscription_cancel",
                method="POST",
                path=("subscriptions", subscription_id),
                json={"cancel_at_period_end": True},
                idempotency_key=idempotency_key,
            )
            return subscription_record(marked.body)
        response = self.transport.call(
            operation="subscription_cancel",
            method="DELETE",
            path=("subscriptions", subscription_id),
            # Stripe takes a DELETE's parameters in the query string.
            params={"prorate": str(prorate).lower(), "invoice_now": str(prorate).lower()},
            idempotency_key=idempotency_key,
        )
        return subscription_record(response.body)

    # --- metered usage ------------------------------------------------------------------
    def usage_report_find(self, *, key: str) -> RemoteRecord | None:
        """The usage record stored under ``identifier`` = ``key`` (``BillingApi``)."""
        found = self._search("usage_report_find", "usage_records", {"identifier": key})
        return usage_record(found) if found is not None else None

    def usage_report_create(
        self,
        *,
        key: str,
        subscription_id: str,
        price_id: str,
        quantity: Decimal,
        period_start: dt.date,
        period_end: dt.date,
    ) -> RemoteRecord:
        """Report metered usage (``BillingApi.usage_report_create``); the key goes out as the
        record's ``identifier`` (billing keeps one per identifier) and the ``Idempotency-Key``.
        """
        response = self.transport.call(
            operation="usage_report_create",
            method="POST",
            path="usage_records",
            json={
                "identifier": key,
                "subscription": subscription_id,
                "price": price_id,
                "quantity": format(quantity.normalize(), "f"),  # 1500.0000 -> "1500"
                "period": {"start": period_start.isoformat(), "end": period_end.isoformat()},
            },
            idempotency_key=key,
        )
        return usage_record(response.body)

    # --- listings (reconciliation) -------------------------------------------------------
    def invoices_list(self, *, updated_since: dt.datetime | None, cursor: str = "") -> RemotePage:
        """One page of invoices changed since ``updated_since`` (``BillingListing``)."""
        body = self._changes("invoices_list", "invoices", updated_since, cursor)
        return invoice_page(body)

    def subscriptions_list(
        self, *, updated_since: dt.datetime | None, cursor: str = ""
    ) -> RemotePage:
        """One page of subscriptions changed since ``updated_since`` (``BillingListing``)."""
        body = self._changes("subscriptions_list", "subscriptions", updated_since, cursor)
        return subscription_page(body)

    def _changes(
        self, operation: str, collection: str, since: dt.datetime | None, cursor: str
    ) -> dict[str, Any]:
        params = {"updated_since": str(int(since.timestamp())) if since else "0", "limit": 100}
        if cursor:
            params["starting_after"] = cursor
        response = self.transport.call(
            operation=operation, method="GET", path=collection, params=params
        )
        return cast(dict[str, Any], response.body)

    def _search(
        self, operation: str, collection: str, params: dict[str, str]
    ) -> dict[str, Any] | None:
        response = self.transport.call(
            operation=operation, method="GET", path=collection, params={**params, "limit": 100}
        )
        found = response.body["data"]
        # Newest first; should there ever be two, the first one made is the one to keep.
        return found[-1] if found else None


def _price_body(lookup_key: str, product_name: str, wanted: dict[str, Any]) -> dict[str, Any]:
    """A new price, with its product, found again by ``lookup_key``."""
    body: dict[str, Any] = {
        "currency": wanted["currency"],
        "unit_amount": wanted["unit_amount"],
        "lookup_key": lookup_key,
        "product_data": {"name": product_name, "metadata": {"lookup_key": lookup_key}},
        "metadata": {"lookup_key": lookup_key},
    }
    recurring = wanted["recurring"]
    if recurring is not None:
        body["recurring"] = {
            "interval": recurring[0],
            "interval_count": recurring[1],
            "usage_type": wanted["usage_type"],
        }
    return body


def _price_same_or_conflict(
    existing: dict[str, Any], lookup_key: str, wanted: dict[str, Any]
) -> None:
    """Raise ``PermanentError`` (kind ``conflict``) unless the existing price is the wanted one."""
    recurring = existing.get("recurring")
    have: dict[str, Any] = {
        "currency": existing["currency"],
        "unit_amount": existing["unit_amount"],
        "recurring": recurring_of(recurring),
        "usage_type": (recurring.get("usage_type") or "licensed") if recurring else None,
    }
    if have != wanted:
        raise PermanentError(
            f"price {existing['id']} with lookup_key {lookup_key!r} is "
            f"{price_describe(have)}, not {price_describe(wanted)}",
            system=SYSTEM,
            kind="conflict",
        )


def customer_record(body: dict[str, Any]) -> RemoteRecord:
    """Billing's customer as a ``RemoteRecord`` (its Tandem reference and invoice prefix)."""
    return RemoteRecord(
        id=str(body["id"]),
        data={
            "reference": (body.get("metadata") or {}).get(ACCOUNT_KEY, ""),
            "email": body.get("email") or "",
            "invoice_prefix": body.get("invoice_prefix") or "",
        },
    )


def price_record(body: dict[str, Any]) -> RemoteRecord:
    """Billing's price as a ``RemoteRecord`` (the amount as a Decimal string, its interval)."""
    recurring = recurring_of(body.get("recurring"))
    return RemoteRecord(
        id=str(body["id"]),
        status="active" if body.get("active", True) else "inactive",
        data={
            "lookup_key": body.get("lookup_key") or "",
            "product_id": str(body.get("product") or ""),
            "currency": str(body["currency"]).upper(),
            "unit_amount": str(decimal_from_minor_units(body["unit_amount"], body["currency"])),
            "interval": recurring[0] if recurring else "",
            "interval_count": recurring[1] if recurring else 0,
        },
    )


def subscription_record(body: dict[str, Any]) -> RemoteRecord:
    """Billing's subscription as a ``RemoteRecord``: its Tandem references, period, and its
    items as parallel lists (``item_ids``, ``price_ids``, ``quantities``).
    """
    metadata = body.get("metadata") or {}
    return RemoteRecord(
        id=str(body["id"]),
        status=str(body["status"]),
        data={
            "customer_id": str(body.get("customer") or ""),
            "order_reference": metadata.get(ORDER_KEY, ""),
            "contract_reference": metadata.get(CONTRACT_KEY, ""),
            "amendment_reference": metadata.get(AMENDMENT_KEY, ""),
            "latest_invoice_id": str(body.get("latest_invoice") or ""),
            "current_period_start": body.get("current_period_start"),
            "current_period_end": body.get("current_period_end"),
            "item_ids": [str(item["id"]) for item in body["items"]["data"]],
            "price_ids": [str(item["price"]["id"]) for item in body["items"]["data"]],
            "quantities": [int(item.get("quantity") or 1) for item in body["items"]["data"]],
            "cancel_at_period_end": bool(body.get("cancel_at_period_end")),
        },
    )


def usage_record(body: dict[str, Any]) -> RemoteRecord:
    """Billing's usage record as a ``RemoteRecord`` (its key, quantity and period)."""
    return RemoteRecord(
        id=str(body["id"]),
        data={
            "key": str(body["identifier"]),
            "subscription_id": str(body["subscription"]),
            "price_id": str(body["price"]),
            "quantity": str(body["quantity"]),
            "period_start": str(body["period"]["start"]),
            "period_end": str(body["period"]["end"]),
        },
    )


def invoice_page(body: dict[str, Any]) -> RemotePage:
    """A page of billing's invoice listing as ``RemotePage`` (``BillingListing``'s fields)."""
    records = [invoice_listed(invoice) for invoice in body["data"]]
    cursor = records[-1].id if body.get("has_more") and records else ""
    return RemotePage(records=records, cursor=cursor)


def invoice_listed(invoice: dict[str, Any]) -> RemoteRecord:
    """One listed invoice; amounts as Decimal (a listing is read a million rows at a time,
    so the conversions here are the cheap exact ones)."""
    currency = str(invoice["currency"]).upper()
    metadata = invoice.get("metadata") or {}
    reference = metadata.get(ORDER_KEY) or metadata.get(CONTRACT_KEY)
    if not reference:
        details = (invoice.get("subscription_details") or {}).get("metadata") or {}
        reference = details.get(ORDER_KEY) or details.get(CONTRACT_KEY) or ""
    places = -ISO_4217.get(currency, 2)
    return RemoteRecord(
        id=str(invoice["id"]),
        status=str(invoice["status"]),
        number=str(invoice.get("number") or ""),
        data={
            "reference": reference,
            "subscription_id": str(invoice.get("subscription") or ""),
            "issue_date": _finalized_date(invoice),
            "currency": currency,
            "total": Decimal(int(invoice["total"])).scaleb(places),
            "tax": Decimal(int(invoice.get("tax") or 0)).scaleb(places),
            "amount_paid": Decimal(int(invoice.get("amount_paid") or 0)).scaleb(places),
        },
    )


@functools.lru_cache(maxsize=4096)
def _unix_day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _finalized_date(invoice: dict[str, Any]) -> str:
    finalized = (invoice.get("status_transitions") or {}).get("finalized_at")
    return _unix_day(int(finalized) // 86400) if finalized else ""


def subscription_page(body: dict[str, Any]) -> RemotePage:
    """A page of billing's subscription listing as ``RemotePage``."""
    records = [subscription_listed(sub) for sub in body["data"]]
    cursor = records[-1].id if body.get("has_more") and records else ""
    return RemotePage(records=records, cursor=cursor)


_PERIODS = {value: key for key, value in INTERVALS.items() if value is not None}


def subscription_listed(sub: dict[str, Any]) -> RemoteRecord:
    metadata = sub.get("metadata") or {}
    currency = str(sub["currency"])
    items = sub["items"]["data"]
    minor = sum(int(item["price"]["unit_amount"]) * int(item["quantity"] or 1) for item in items)
    recurring = recurring_of(items[0]["price"].get("recurring")) if items else None
    status = str(sub["status"])
    if status == "active" and sub.get("cancel_at_period_end"):
        status = CANCELING  # runs out its period and ends: no longer a live subscription
    return RemoteRecord(
        id=str(sub["id"]),
        status=status,
        data={
            "reference": metadata.get(ORDER_KEY) or metadata.get(CONTRACT_KEY) or "",
            "contract_reference": metadata.get(CONTRACT_KEY, ""),
            "currency": currency.upper(),
            "period": _PERIODS.get(recurring, "") if recurring else "",
            "amount": str(decimal_from_minor_units(minor, currency)),
        },
    )


def _implements(connector: SandboxBilling) -> BillingApi:
    return connector  # mypy checks that SandboxBilling satisfies BillingApi


def _updates_customers(connector: SandboxBilling) -> CustomerUpdating:
    return connector


def _lists(connector: SandboxBilling) -> BillingListing:
    return connector  # mypy checks that SandboxBilling satisfies BillingListing
