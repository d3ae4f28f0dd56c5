"""What the workflows need from each kind of system. One implementation per product.

Every method that creates something takes the step's ``idempotency_key`` (sent as the
``Idempotency-Key`` header where the system honours it) and a ``reference`` (the Tandem
enterprise id) stored on the remote record, and every such create has a ``find_*`` twin
that looks the record up by that reference: a step calls ``find_*`` first, so a create whose
response was lost is found instead of made twice. Methods raise the transport's
``RetryableError`` / ``PermanentError``; amounts are Decimal with a currency.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True)
class Party:
    """A customer as sent to ERP and billing."""

    reference: str  # ACC-…
    name: str
    country: str
    currency: str
    email: str = ""
    tax_id: str = ""
    address_line1: str = ""
    city: str = ""
    postcode: str = ""
    erp_subsidiary: str = ""
    crm_id: str = ""  # the CRM's account id, for systems that keep it beside ours


@dataclass(frozen=True)
class RemoteLine:
    product_ref: str  # the system's own product / item / price id (from ProductMapping)
    quantity: Decimal
    unit_price: Decimal
    description: str = ""


@dataclass(frozen=True)
class RemoteRecord:
    """What a system returned: its id and anything the workflow keeps."""

    id: str
    status: str = ""
    number: str = ""
    data: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class CpqQuote:
    quote_id: str
    data: dict[str, object]


class CpqApi(Protocol):
    def quote_get(self, *, quote_id: str) -> CpqQuote: ...


class TaxApi(Protocol):
    def address_validate(
        self, *, line1: str, city: str, postcode: str, country: str, correlation_id: str
    ) -> RemoteRecord: ...

    def tax_quote(
        self,
        *,
        reference: str,
        country: str,
        currency: str,
        lines: list[RemoteLine],
        date: dt.date,
        postcode: str = "",  # tax engines need the ship-to postal code, not just the country
    ) -> Decimal: ...


class ErpApi(Protocol):
    def customer_find(self, *, reference: str) -> RemoteRecord | None: ...

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord: ...

    def sales_order_find(self, *, reference: str) -> RemoteRecord | None: ...

    def sales_order_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord: ...

    def sales_order_cancel(self, *, sales_order_id: str, idempotency_key: str) -> RemoteRecord: ...

    def invoice_find(self, *, reference: str) -> RemoteRecord | None: ...

    def invoice_create(
        self,
        *,
        reference: str,
        customer_id: str,
        sales_order_id: str,
        currency: str,
        lines: list[RemoteLine],
        idempotency_key: str,
    ) -> RemoteRecord: ...


class BillingApi(Protocol):
    def customer_find(self, *, reference: str) -> RemoteRecord | None: ...

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord: ...

    def price_ensure(
        self,
        *,
        lookup_key: str,
        product_name: str,
        currency: str,
        unit_amount: Decimal,
        interval: str,
        idempotency_key: str,
    ) -> RemoteRecord: ...

    def subscription_find(self, *, reference: str) -> RemoteRecord | None: ...

    def subscription_create(
        self,
        *,
        reference: str,
        customer_id: str,
        items: list[tuple[str, Decimal]],  # (price id, quantity)
        idempotency_key: str,
        contract_reference: str = "",  # CTR-…, named by billing's subscription.activated
    ) -> RemoteRecord: ...

    def subscription_get(self, *, subscription_id: str) -> RemoteRecord: ...

    def subscription_update(
        self,
        *,
        subscription_id: str,
        items: list[tuple[str, Decimal]],  # the subscription's items afterwards
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> RemoteRecord: ...

    def subscription_cancel(
        self, *, subscription_id: str, idempotency_key: str
    ) -> RemoteRecord: ...


class CrmApi(Protocol):
    def account_find(self, *, name: str = "", domain: str = "") -> list[RemoteRecord]: ...

    def account_create(
        self, *, name: str, domain: str, country: str, currency: str, idempotency_key: str
    ) -> RemoteRecord: ...


class PaymentsApi(Protocol):
    def payment_find(self, *, invoice_ref: str) -> RemoteRecord | None: ...

    def payment_collect(
        self, *, invoice_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RemoteRecord: ...


@dataclass(frozen=True)
class PollBatch:
    """What one poll read: canonical event payloads (oldest first) and the cursor after them.

    Each payload is a whole canonical event (``event_id``, ``event_type``,
    ``schema_version``, ``occurred_at``, ``data``); its ``event_id`` is stable, so reading the
    same change twice yields the same id and the second copy is absorbed.
    """

    events: list[dict[str, Any]]
    cursor: str


class Pollable(Protocol):
    """A system without webhooks: its changes are read with a cursor
    (orchestration.events.polling)."""

    def poll_streams(self) -> list[str]: ...

    def poll(self, *, stream: str, cursor: str) -> PollBatch: ...


class Rechecking(Pollable, Protocol):
    """A polled system whose changes can become visible behind the cursor (a transaction that
    began before the cursor's position committed after the cursor moved past it)."""

    def poll_recheck(self, *, stream: str, cursor: str) -> list[dict[str, Any]]:
        """Every change of the look-back window just behind ``cursor``, as ``poll`` would give
        it (the same stable event ids), whether or not it was read before."""
        ...
