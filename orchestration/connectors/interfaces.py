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
    def quote_get(self, *, quote_id: str) -> CpqQuote:
        """The quote ``quote_id`` with its lines, as CPQ holds it now. Reads only.

        Raises ``PermanentError`` (kind ``not_found``) for an unknown id, ``RetryableError``
        when CPQ cannot answer now.
        """
        ...


class TaxApi(Protocol):
    def address_validate(
        self, *, line1: str, city: str, postcode: str, country: str, correlation_id: str
    ) -> RemoteRecord:
        """The address as the tax engine resolves it. Reads only: safe to repeat.

        Returns the resolved address (``status`` is the resolution quality, ``data`` its
        fields and jurisdictions). An address the engine cannot resolve raises
        ``PermanentError`` with its message (an exception for the tax team);
        ``RetryableError`` when the engine cannot answer now.
        """
        ...

    def tax_quote(
        self,
        *,
        reference: str,
        country: str,
        currency: str,
        lines: list[RemoteLine],
        date: dt.date,
        postcode: str = "",  # tax engines need the ship-to postal code, not just the country
    ) -> Decimal:
        """The total tax on ``lines`` shipped to ``country`` (and ``postcode``) on ``date``.

        An estimate the engine does not store, so it needs no idempotency key and asking
        twice changes nothing. Returns the tax in ``currency``; raises ``PermanentError``
        for what the engine refuses (no postal code, an invalid address), ``RetryableError``
        when it cannot answer now.
        """
        ...


class ErpApi(Protocol):
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        """The ERP customer that carries Tandem's ``reference`` (``ACC-…``), or None.

        Reads only; the look-up a step makes before ``customer_create``. Raises
        ``RetryableError`` when the ERP cannot answer now.
        """
        ...

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        """Create the customer ``party`` in the ERP, carrying ``party.reference``.

        Call ``customer_find`` first: the reference is what finds a create whose answer was
        lost, and ``idempotency_key`` (the step's) is sent where the ERP honours it. Returns
        the new customer (its ERP id). Raises ``PermanentError`` for what the ERP refuses
        (invalid data, a reference already taken), ``RetryableError`` for what may pass later.
        """
        ...

    def sales_order_find(self, *, reference: str) -> RemoteRecord | None:
        """The sales order that carries ``reference`` (the order's ``ORD-…``), or None.

        Reads (an implementation may finish a create that stopped half-way, as the create
        would have). ``status`` tells whether finance accepted it. Raises ``RetryableError``
        when the ERP cannot answer now.
        """
        ...

    def sales_order_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
        subsidiary: str = "",
    ) -> RemoteRecord:
        """Create a sales order for ERP customer ``customer_id`` carrying ``reference``,
        booked in ``subsidiary`` (the order's legal entity's company; the customer's own
        when empty).

        Call ``sales_order_find`` first; ``idempotency_key`` is the step's. The order awaits
        financial acceptance in the ERP (read back later, never assumed). Returns the order
        (id, number, status). Raises ``PermanentError`` for what the ERP refuses (an unknown
        customer or item, invalid lines), ``RetryableError`` for what may pass later.
        """
        ...

    def sales_order_cancel(self, *, sales_order_id: str, idempotency_key: str) -> RemoteRecord:
        """Cancel the ERP's sales order ``sales_order_id`` (a compensation).

        ``idempotency_key`` is sent where the ERP honours it. Returns the order as it stands
        after. Raises ``PermanentError`` when the ERP will not cancel it (it is fulfilled or
        invoiced, or not open any more: a person decides), ``RetryableError`` for what may
        pass later.
        """
        ...

    def return_find(self, *, reference: str) -> RemoteRecord | None:
        """The return (a credit for what the customer gives back) that carries ``reference``,
        or None. Reads; ``RetryableError`` when the ERP cannot answer now."""
        ...

    def return_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        """Record a return for ERP customer ``customer_id`` carrying ``reference``: what a
        decrease or a cancellation gives back, lines with positive quantities (never a
        negative sales line). Call ``return_find`` first. ``PermanentError`` for what the ERP
        refuses, ``RetryableError`` for what may pass later."""
        ...

    def invoice_find(self, *, reference: str) -> RemoteRecord | None:
        """The customer invoice that carries ``reference``, or None.

        Reads (an implementation may post an invoice a lost answer left in draft). Raises
        ``RetryableError`` when the ERP cannot answer now.
        """
        ...

    def invoice_create(
        self,
        *,
        reference: str,
        customer_id: str,
        sales_order_id: str,
        currency: str,
        lines: list[RemoteLine],
        idempotency_key: str,
    ) -> RemoteRecord:
        """Create and post an invoice carrying ``reference``: of ``sales_order_id`` when
        given (all of it unless ``lines`` says what), else of ``customer_id`` for ``lines``.

        Call ``invoice_find`` first; ``idempotency_key`` is the step's. Returns the posted
        invoice (id, number, totals). Raises ``PermanentError`` for what the ERP refuses (a
        sales order it will not invoice, invalid lines), ``RetryableError`` otherwise.
        """
        ...


class ErpReceivablesApi(Protocol):
    """An ERP that keeps receivables Tandem posts: billing's invoices (``ErpApi.invoice_*``
    without a sales order), credit memos, payments applied to invoices and refunds.

    Every create carries Tandem's ``reference`` (``CRN-…``, ``PAY-…``, ``RFD-…``) and has a
    ``*_find`` twin, like ``ErpApi``; a step finds before it creates."""

    def credit_memo_find(self, *, reference: str) -> RemoteRecord | None: ...

    def credit_memo_create(
        self,
        *,
        reference: str,
        invoice_id: str,
        currency: str,
        amount: Decimal,
        memo: str,
        idempotency_key: str,
    ) -> RemoteRecord:
        """A credit memo of ``amount`` against ERP invoice ``invoice_id`` (lowering what is
        due on it). ``PermanentError`` for what the ERP refuses, ``RetryableError`` else."""
        ...

    def payment_find(self, *, reference: str) -> RemoteRecord | None: ...

    def payment_create(
        self,
        *,
        reference: str,
        customer_id: str,
        invoice_id: str,
        currency: str,
        amount: Decimal,
        received_on: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        """A customer payment of ``amount`` applied to ERP invoice ``invoice_id``; more than
        remains due is refused (``PermanentError``)."""
        ...

    def refund_find(self, *, reference: str) -> RemoteRecord | None: ...

    def refund_create(
        self,
        *,
        reference: str,
        customer_id: str,
        payment_id: str,
        currency: str,
        amount: Decimal,
        idempotency_key: str,
    ) -> RemoteRecord:
        """A customer refund of ``amount`` on ERP payment ``payment_id``; more than the
        payment brought is refused (``PermanentError``)."""
        ...


class CustomerUpdating(Protocol):
    """A system whose customers Tandem keeps up to date (address, tax id, name, email)."""

    def customer_update(
        self, *, customer_id: str, party: Party, idempotency_key: str
    ) -> RemoteRecord:
        """Set the customer's name, email, tax id and address to ``party``'s (the same
        values again change nothing). ``PermanentError`` for an unknown customer or what the
        system refuses, ``RetryableError`` for what may pass later."""
        ...


class BillingApi(Protocol):
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        """The billing customer that carries ``reference`` (``ACC-…``) in its metadata, or
        None. Reads only; raises ``RetryableError`` when billing cannot answer now."""
        ...

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        """Create the billing customer ``party``, with ``party.reference`` in its metadata.

        Call ``customer_find`` first; ``idempotency_key`` (the step's) goes out as the
        ``Idempotency-Key``, so a retry of a create whose answer was lost gets the same
        customer. Returns it (its billing id). Raises ``PermanentError`` for invalid data,
        ``RetryableError`` for what may pass later.
        """
        ...

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
        """The price found by ``lookup_key``, created (with its product) when there is none.

        Safe to repeat: the look-up comes first, and the create carries ``idempotency_key``.
        ``interval`` is ``day``, ``week``, ``month``, ``quarter``, ``year`` or ``""``
        (one-time); ``usage_type`` is ``licensed`` (billed by the item's quantity) or
        ``metered`` (billed by the usage reported, ``usage_report_create``; recurring only).
        A price under that key with another amount, currency, interval or usage type raises
        ``PermanentError`` (kind ``conflict``: the mapping is wrong, never bill at the wrong
        price); so does an unknown interval or an amount the currency cannot hold (kind
        ``validation``). ``RetryableError`` for what may pass later.
        """
        ...

    def subscription_find(self, *, reference: str) -> RemoteRecord | None:
        """The subscription that carries ``reference`` (``ORD-…``, ``ORD-…:<period>`` or
        ``CTR-…``) in its metadata, any status, or None. Reads only; ``RetryableError`` when
        billing cannot answer now."""
        ...

    def subscription_create(
        self,
        *,
        reference: str,
        customer_id: str,
        items: list[tuple[str, Decimal]],  # (price id, quantity)
        idempotency_key: str,
        contract_reference: str = "",  # CTR-…, named by billing's subscription.activated
    ) -> RemoteRecord:
        """Subscribe ``customer_id`` to ``items``, carrying ``reference`` (and the contract's).

        Call ``subscription_find`` first; ``idempotency_key`` is the step's. Billing starts
        at once (call it only after the ERP accepted the order). Returns the subscription.
        Raises ``PermanentError`` for what billing refuses (an unknown customer or price, a
        quantity that is not a whole number of at least 1), ``RetryableError`` otherwise.
        """
        ...

    def subscription_get(self, *, subscription_id: str) -> RemoteRecord:
        """The subscription with its items (``item_ids``, ``price_ids``, ``quantities``) and
        its Tandem references. Reads only; ``PermanentError`` (``not_found``) for an unknown
        id, ``RetryableError`` when billing cannot answer now."""
        ...

    def subscription_update(
        self,
        *,
        subscription_id: str,
        items: list[tuple[str, Decimal]],  # the subscription's items afterwards
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> RemoteRecord:
        """Change the subscription to exactly ``items``, prorated from now, and add
        ``metadata`` (the amendment's reference, which a step checks before updating again).

        A price already on it keeps its item (a quantity change); the others are added or
        removed. ``idempotency_key`` is the step's. Returns the subscription after. Raises
        ``PermanentError`` for what billing refuses, ``RetryableError`` otherwise.
        """
        ...

    def subscription_cancel(
        self,
        *,
        subscription_id: str,
        idempotency_key: str,
        prorate: bool = True,
        at_period_end: bool = False,
    ) -> RemoteRecord:
        """Cancel the subscription now; ``idempotency_key`` makes a retry cancel it once.
        ``prorate`` credits the unused time of the current period on a final invoice (a
        cancellation at term end has none to credit). ``at_period_end`` instead lets the
        current period run out and bills no other (``cancel_at_period_end``): the
        subscription stays ``active`` with ``data["cancel_at_period_end"]`` True until then.

        Returns the subscription after. Raises ``PermanentError`` for an unknown id or what
        billing refuses, ``RetryableError`` for what may pass later.
        """
        ...

    def usage_report_find(self, *, key: str) -> RemoteRecord | None:
        """The usage report billing keeps under ``key``, or None. Reads only;
        ``RetryableError`` when billing cannot answer now."""
        ...

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
        """Report ``quantity`` (signed: a negative one corrects an earlier report) of the
        metered ``price_id`` on ``subscription_id`` for the period, under ``key``.

        Call ``usage_report_find`` first; billing keeps one report per ``key``, so sending it
        again after a lost answer adds nothing. Returns the report. Raises ``PermanentError``
        for what billing refuses (an unknown subscription, a price that is not metered),
        ``RetryableError`` for what may pass later.
        """
        ...


@dataclass(frozen=True)
class RemotePage:
    """One page of a system's listing: its records (oldest change first) and the cursor of
    the next page, ``""`` when this was the last one."""

    records: list[RemoteRecord]
    cursor: str


class BillingListing(Protocol):
    """Billing read page by page, for reconciliation. Reads only; ``RetryableError`` when
    billing cannot answer now, ``PermanentError`` for a cursor it does not know.

    ``updated_since`` (None: everything) keeps the records changed at or after it.
    An invoice's ``data``: ``reference`` (its order's or contract's ``ORD-…``/``CTR-…``),
    ``subscription_id``, ``issue_date`` (ISO), ``currency`` (upper case), ``total``, ``tax``,
    ``amount_paid`` (Decimal) and ``status`` (``draft``, ``open``, ``paid``,
    ``void``). A subscription's: ``reference``, ``contract_reference``, ``currency``,
    ``period`` (Tandem's billing period), ``amount`` (per period, Decimal string),
    ``status`` (``active``, ``canceled``, …).
    """

    def invoices_list(self, *, updated_since: dt.datetime | None, cursor: str = "") -> RemotePage:
        """One page of invoices after ``cursor`` (``""``: the first page)."""
        ...

    def subscriptions_list(
        self, *, updated_since: dt.datetime | None, cursor: str = ""
    ) -> RemotePage:
        """One page of subscriptions after ``cursor`` (``""``: the first page)."""
        ...


class ErpListing(Protocol):
    """The ERP read page by page, for reconciliation; the same contract as
    ``BillingListing``. A sales order's ``data``: ``reference`` (``ORD-…``), ``currency``,
    ``total`` and ``status`` (``pendingApproval``, ``pendingFulfillment``, ``fullyBilled``,
    ``cancelled``); an invoice's as billing's (``status`` ``open``, ``paid`` or ``void``)."""

    def sales_orders_list(
        self, *, updated_since: dt.datetime | None, cursor: str = ""
    ) -> RemotePage:
        """One page of sales orders after ``cursor``."""
        ...

    def invoices_list(self, *, updated_since: dt.datetime | None, cursor: str = "") -> RemotePage:
        """One page of customer invoices after ``cursor``."""
        ...


class CrmApi(Protocol):
    def account_find(self, *, name: str = "", domain: str = "") -> list[RemoteRecord]:
        """CRM accounts whose name contains ``name`` and whose website is on ``domain`` (at
        least one of them is required). Reads only; ``RetryableError`` when the CRM cannot
        answer now."""
        ...

    def account_create(
        self, *, name: str, domain: str, country: str, currency: str, idempotency_key: str
    ) -> RemoteRecord:
        """Create a CRM account; ``idempotency_key`` makes a repeat return the same one.

        Returns the account's CRM id. Raises ``PermanentError`` for what the CRM refuses,
        ``RetryableError`` for what may pass later.
        """
        ...


class PaymentsApi(Protocol):
    def payment_find(self, *, invoice_ref: str) -> RemoteRecord | None:
        """The payment collected for ``invoice_ref``: a succeeded one if any, else the latest
        attempt, or None. Reads only; ``RetryableError`` when the processor cannot answer."""
        ...

    def payment_collect(
        self, *, invoice_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RemoteRecord:
        """Collect ``amount`` for ``invoice_ref``, carrying the reference.

        Call ``payment_find`` first; ``idempotency_key`` makes a retry collect once. Returns
        the payment (its ``status``). A declined payment raises ``PermanentError`` with the
        processor's message; ``RetryableError`` for what may pass later.
        """
        ...


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

    def poll_streams(self) -> list[str]:
        """The names of the streams to poll, each with its own cursor. Makes no call."""
        ...

    def poll(self, *, stream: str, cursor: str) -> PollBatch:
        """One page of ``stream``'s changes after ``cursor`` (``""``: from the start).

        Reads only; the returned cursor is where the next page starts (the same cursor when
        nothing changed). Raises ``PermanentError`` for an unknown stream and what the
        system refuses, ``RetryableError`` when it cannot answer now; either leaves the
        cursor where it was.
        """
        ...


class Rechecking(Pollable, Protocol):
    """A polled system whose changes can become visible behind the cursor (a transaction that
    began before the cursor's position committed after the cursor moved past it)."""

    def poll_recheck(self, *, stream: str, cursor: str) -> list[dict[str, Any]]:
        """Every change of the look-back window just behind ``cursor``, as ``poll`` would give
        it (the same stable event ids), whether or not it was read before."""
        ...
