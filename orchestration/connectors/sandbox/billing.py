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

from decimal import Decimal
from typing import Any, cast

from orchestration.connectors.billing_common import (
    ACCOUNT_KEY,
    AMENDMENT_KEY,
    CONTRACT_KEY,
    ORDER_KEY,
    interval_check,
    price_describe,
    recurring_of,
    reference_key,
    subscription_metadata,
    whole_quantity,
)
from orchestration.connectors.errors import PermanentError
from orchestration.connectors.interfaces import BillingApi, Party, RemoteRecord
from orchestration.connectors.minor_units import decimal_from_minor_units, minor_units_from
from orchestration.connectors.transport import Transport

SYSTEM = "billing"


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
    ) -> RemoteRecord:
        """The price with ``lookup_key``, created (with its product) when there is none.

        A price that exists under that key with another amount, currency or interval is
        refused with ``PermanentError`` (kind ``conflict``): the mapping is wrong, and billing
        a customer at the wrong price is never the way out. ``interval`` is one of ``day``,
        ``week``, ``month``, ``quarter``, ``year``, or ``""`` for a one-time price.
        """
        recurring = interval_check(interval)
        wanted: dict[str, Any] = {
            "currency": currency.lower(),
            "unit_amount": minor_units_from(unit_amount, currency, system=SYSTEM),
            "recurring": recurring,
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

    def subscription_cancel(self, *, subscription_id: str, idempotency_key: str) -> RemoteRecord:
        """Cancel the subscription now (``BillingApi.subscription_cancel``); billing answers a
        cancelled one unchanged.
        """
        response = self.transport.call(
            operation="subscription_cancel",
            method="DELETE",
            path=("subscriptions", subscription_id),
            idempotency_key=idempotency_key,
        )
        return subscription_record(response.body)

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
        body["recurring"] = {"interval": recurring[0], "interval_count": recurring[1]}
    return body


def _price_same_or_conflict(
    existing: dict[str, Any], lookup_key: str, wanted: dict[str, Any]
) -> None:
    """Raise ``PermanentError`` (kind ``conflict``) unless the existing price is the wanted one."""
    have: dict[str, Any] = {
        "currency": existing["currency"],
        "unit_amount": existing["unit_amount"],
        "recurring": recurring_of(existing.get("recurring")),
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
        },
    )


def _implements(connector: SandboxBilling) -> BillingApi:
    return connector  # mypy checks that SandboxBilling satisfies BillingApi
