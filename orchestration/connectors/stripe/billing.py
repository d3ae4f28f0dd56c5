"""``BillingApi`` for Stripe Billing, through the official ``stripe`` SDK.

Every request the SDK makes goes through Tandem's shared ``Transport`` (``TransportHttpClient``
below), so Stripe gets the same allow-list, timeouts, rate limit, error classification and
``OutboundCall`` rows (operation, status, latency, redacted bodies, correlation id) as every
other system. The SDK's own retries are off: the workflow engine retries retryable steps.

Stripe objects have no external id, so Tandem's references travel in ``metadata`` (the same
keys as the sandbox connector: ``tandem_account`` on customers, ``tandem_order`` /
``tandem_contract`` on subscriptions). Every mutating call carries the step's key as the
``Idempotency-Key``.

Two catalogs (``CONNECTOR_BILLING_STRIPE_CATALOG``):

- ``prices`` (Stripe today): prices found by ``lookup_key``, customers and subscriptions by
  the Search API, amendments with ``proration_behavior=create_prorations``.
- ``plans`` (the legacy Plans API, all localstripe has): a plan's id is derived from the
  lookup key, so finding it is a retrieve; customers and subscriptions are found by listing
  and filtering on metadata; amendments with ``prorate=true``.
- ``auto`` (the default) asks ``GET /v1/prices`` once per process: a 404 means plans.

Metered usage goes through Billing Meters (the SDK's API version has no usage records): a
metered price is created on a meter of its own (found by its ``event_name``, derived from
the lookup key) and usage is a meter event carrying the usage key as its ``identifier`` and
its ``Idempotency-Key``. The plans catalog has no meters: metered prices are refused there.
Cancelling at term end sets ``cancel_at_period_end``; cancelling now prorates the unused time
onto a final invoice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import stripe
from django.conf import settings

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
from orchestration.connectors.errors import (
    ConnectorConfigurationError,
    ConnectorError,
    PermanentError,
    RetryableError,
)
from orchestration.connectors.interfaces import BillingApi, Party, RemoteRecord
from orchestration.connectors.minor_units import decimal_from_minor_units, minor_units_from
from orchestration.connectors.transport import Transport, retry_after_parse

SYSTEM = "billing"
CATALOGS = ("auto", "prices", "plans")
LIST_PAGE = 100
USAGE_NEEDS_METERS = (
    "metered usage goes through Stripe Billing Meters, which the legacy plans catalog does not "
    "have: bill this usage with the prices catalog (CONNECTOR_BILLING_STRIPE_CATALOG=prices)"
)
METER_EVENT_KEY = "tandem_meter_event"  # a metered price's metadata: its meter's event name
PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")


@dataclass
class _CallState:
    operation: str = ""
    outbound_call_id: int | None = None
    retry_after: int | None = None


_call = threading.local()


def _state() -> _CallState:
    state: _CallState | None = getattr(_call, "state", None)
    if state is None:
        state = _call.state = _CallState()
    return state


class TransportHttpClient(stripe.HTTPClient):
    """The SDK's HTTP client, sending every request through Tandem's ``Transport``.

    The operation name comes from the connector method running (``_operation``); answers of
    every status go back to the SDK, which raises its own errors for the connector to class.
    """

    name = "tandem-transport"

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.transport = transport
        self._base = transport.config.base_url.rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        """Send the SDK's request through the transport and hand back (body, status, headers),
        whatever the status; the SDK raises its own errors, which the connector classes.
        Requests to another host than billing's are refused (``ConnectorConfigurationError``).
        """
        if not url.startswith(self._base + "/"):
            raise ConnectorConfigurationError(f"Stripe URL {urlsplit(url).path!r} leaves billing")
        sent = dict(headers or {})
        key = sent.pop("Idempotency-Key", "")
        sent.pop("Authorization", None)  # the transport adds the configured key itself
        encoded = None
        if post_data:
            text = post_data.decode() if isinstance(post_data, bytes) else str(post_data)
            encoded = (text, dict(parse_qsl(text, keep_blank_values=True)))
        state = _state()
        response = self.transport.call(
            operation=state.operation or "stripe_call",
            method=method,
            path=url[len(self._base) :],
            idempotency_key=key,
            encoded=encoded,
            headers=sent,
            raise_for_status=False,
        )
        state.outbound_call_id = response.outbound_call_id
        state.retry_after = retry_after_parse(response.headers.get("Retry-After"))
        content = self._content(response.body)
        return content, response.status_code, response.headers

    @staticmethod
    def _content(body: Any) -> str:
        if body is None:
            return ""
        return body if isinstance(body, str) else json.dumps(body)

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: Tandem makes no streaming calls."""
        raise NotImplementedError("Tandem makes no streaming calls to Stripe")

    def close(self) -> None:
        """The transport's pooled sessions outlive one client."""


def stripe_error_class(exc: stripe.StripeError, *, outbound_call_id: int | None = None,
                       retry_after: int | None = None) -> ConnectorError:  # fmt: skip
    """The connector error for a Stripe SDK error: retry only what retrying can fix."""
    status = exc.http_status
    message = (exc.user_message or str(exc) or type(exc).__name__)[:500]
    common: dict[str, Any] = {"system": SYSTEM, "status": status,
                              "outbound_call_id": outbound_call_id}  # fmt: skip
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return RetryableError(message, kind="rate_limited", retry_after=retry_after, **common)
    if isinstance(exc, stripe.APIConnectionError):
        return RetryableError(message, kind="connection_error", **common)
    if status is not None and status >= 500:
        return RetryableError(message, kind="server_error", retry_after=retry_after, **common)
    if isinstance(exc, stripe.CardError):
        return PermanentError(message, kind="card_declined", **common)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return PermanentError(message, kind="auth", **common)
    if isinstance(exc, stripe.IdempotencyError):
        return PermanentError(message, kind="idempotency", **common)
    if status == 404:
        return PermanentError(message, kind="not_found", **common)
    if status == 409:  # the same Idempotency-Key with other parameters, or still running
        return PermanentError(message, kind="conflict", **common)
    return PermanentError(message, kind="validation", **common)


_detected_catalogs: dict[str, str] = {}


def plan_id_for(lookup_key: str) -> str:
    """A legacy plan's id for ``lookup_key``: readable, unique, within Stripe's id rules."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", lookup_key).strip("-")[:60]
    digest = hashlib.sha256(lookup_key.encode()).hexdigest()[:12]
    return f"tandem-{readable}-{digest}"


class StripeBilling:
    """Stripe Billing over the official SDK; see the module docstring for the catalogs."""

    def __init__(self, transport: Transport | None = None, *, catalog: str | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)
        api_key = self.transport.config.credential()
        if not api_key:
            raise ConnectorConfigurationError(
                f"billing: {self.transport.config.credential_env} (the Stripe secret key) is unset"
            )
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.transport.config.base_url.rstrip("/")},
            http_client=TransportHttpClient(self.transport),
            max_network_retries=0,
        )
        self._test_payment_method: str = settings.CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD
        if self._test_payment_method and api_key.startswith(("sk_live_", "rk_live_")):
            raise ConnectorConfigurationError(
                "CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD is for test mode; the key is live"
            )
        self._catalog = catalog or settings.CONNECTOR_BILLING_STRIPE_CATALOG
        if self._catalog not in CATALOGS:
            raise ConnectorConfigurationError(
                f"CONNECTOR_BILLING_STRIPE_CATALOG must be one of {CATALOGS}, not {self._catalog!r}"
            )

    # --- plumbing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _operation(self, name: str) -> Iterator[None]:
        """Name the calls made inside, and turn Stripe's errors into the connector's."""
        state = _state()
        previous = state.operation
        state.operation, state.outbound_call_id, state.retry_after = name, None, None
        try:
            yield
        except stripe.StripeError as exc:
            raise stripe_error_class(
                exc, outbound_call_id=state.outbound_call_id, retry_after=state.retry_after
            ) from exc
        finally:
            state.operation = previous

    def catalog(self) -> str:
        """``prices`` or ``plans``: the configured one, or what the server supports."""
        if self._catalog != "auto":
            return self._catalog
        base = self.transport.config.base_url
        if base not in _detected_catalogs:
            try:
                with self._operation("catalog_detect"):
                    self.client.v1.prices.list(params={"limit": 1})
                _detected_catalogs[base] = "prices"
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                _detected_catalogs[base] = "plans"
        return _detected_catalogs[base]

    def _find_by_metadata(
        self, operation: str, resource: str, key: str, value: str, **list_params: Any
    ) -> dict[str, Any] | None:
        """The oldest object of ``resource`` whose ``metadata[key] == value``, or None."""
        service = getattr(self.client.v1, resource)
        with self._operation(operation):
            if self.catalog() == "prices":
                # Search is eventually consistent: a just-created object may be missed for a
                # few seconds; the Idempotency-Key of the create covers that window.
                quoted = value.replace("\\", "\\\\").replace("'", "\\'")
                found = service.search(
                    params={"query": f"metadata['{key}']:'{quoted}'", "limit": LIST_PAGE}
                )
                matches = [obj.to_dict() for obj in found.data]
            else:
                matches = []
                params: Any = {"limit": LIST_PAGE, **list_params}
                while True:
                    page = service.list(params=params)
                    matches += [
                        body
                        for body in (obj.to_dict() for obj in page.data)
                        if (body.get("metadata") or {}).get(key) == value
                    ]
                    if not page.has_more or not page.data:
                        break
                    params["starting_after"] = page.data[-1].id
        matches.sort(key=lambda obj: (obj.get("created") or 0, obj["id"]))
        return matches[0] if matches else None

    # --- customers ----------------------------------------------------------------------
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        """The oldest customer with ``metadata[tandem_account]`` = ``reference``
        (``BillingApi.customer_find``)."""
        found = self._find_by_metadata("customer_find", "customers", ACCOUNT_KEY, reference)
        return customer_record(found) if found is not None else None

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        """Create the customer with the reference (and tax id) in its metadata
        (``BillingApi.customer_create``); in test mode it gets the test payment method.
        """
        metadata = {ACCOUNT_KEY: party.reference}
        if party.tax_id:
            metadata["tax_id"] = party.tax_id
        params: Any = {"name": party.name, "metadata": metadata}
        if party.email:
            params["email"] = party.email
        address = {"line1": party.address_line1, "city": party.city,
                   "postal_code": party.postcode, "country": party.country.upper()}  # fmt: skip
        params["address"] = {key: value for key, value in address.items() if value}
        if self._test_payment_method:
            # Rehearsals in test mode: every customer pays with Stripe's test card.
            params["payment_method"] = self._test_payment_method
            params["invoice_settings"] = {"default_payment_method": self._test_payment_method}
        with self._operation("customer_create"):
            customer = self.client.v1.customers.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return customer_record(customer.to_dict())

    # --- prices (or plans) --------------------------------------------------------------
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
        """The price (or plan) for ``lookup_key``, created with its product when missing.

        One that exists with another amount, currency or interval is refused with
        ``PermanentError`` (kind ``conflict``): the mapping is wrong. The plans catalog has
        no one-time prices: ``interval=""`` is refused there (kind ``validation``).
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
        }
        if usage_type == "metered":
            wanted["usage_type"] = "metered"
        if self.catalog() == "plans":
            if usage_type == "metered":
                raise PermanentError(USAGE_NEEDS_METERS, system=SYSTEM, kind="validation")
            return self._plan_ensure(lookup_key, product_name, wanted, idempotency_key)
        with self._operation("price_find"):
            found = self.client.v1.prices.list(params={"lookup_keys": [lookup_key], "limit": 1})
        if found.data:
            existing = found.data[0].to_dict()
        else:
            params: Any = {
                "currency": wanted["currency"],
                "unit_amount": wanted["unit_amount"],
                "lookup_key": lookup_key,
                "product_data": {"name": product_name, "metadata": {"lookup_key": lookup_key}},
                "metadata": {"lookup_key": lookup_key},
            }
            if recurring is not None:
                params["recurring"] = {"interval": recurring[0], "interval_count": recurring[1]}
            if usage_type == "metered":
                meter = self._meter_ensure(lookup_key, product_name, idempotency_key)
                params["recurring"] |= {"usage_type": "metered", "meter": meter["id"]}
                params["metadata"][METER_EVENT_KEY] = meter["event_name"]
            with self._operation("price_create"):
                created = self.client.v1.prices.create(
                    params=params, options={"idempotency_key": idempotency_key}
                )
            return price_record(created.to_dict())
        have: dict[str, Any] = {
            "currency": existing["currency"],
            "unit_amount": existing["unit_amount"],
            "recurring": recurring_of(existing.get("recurring")),
        }
        if (existing.get("recurring") or {}).get("usage_type") == "metered":
            have["usage_type"] = "metered"
        _same_or_conflict("price", existing["id"], lookup_key, have, wanted)
        return price_record(existing)

    def _meter_ensure(
        self, lookup_key: str, product_name: str, idempotency_key: str
    ) -> dict[str, Any]:
        """The active meter summing the events named for ``lookup_key``, created when missing
        (its create carries ``<idempotency_key>:meter``)."""
        event_name = meter_event_name(lookup_key)
        params: Any = {"status": "active", "limit": LIST_PAGE}
        with self._operation("meter_find"):
            while True:
                page = self.client.v1.billing.meters.list(params=params)
                for meter in page.data:
                    if meter.to_dict().get("event_name") == event_name:
                        return cast(dict[str, Any], meter.to_dict())
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        create: Any = {
            "display_name": f"{product_name} ({lookup_key})"[:250],
            "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }
        with self._operation("meter_create"):
            created = self.client.v1.billing.meters.create(
                params=create, options={"idempotency_key": f"{idempotency_key}:meter"}
            )
        return cast(dict[str, Any], created.to_dict())

    def _plan_ensure(
        self, lookup_key: str, product_name: str, wanted: dict[str, Any], idempotency_key: str
    ) -> RemoteRecord:
        recurring = wanted["recurring"]
        if recurring is None:
            raise PermanentError(
                "the Stripe plans catalog has no one-time prices", system=SYSTEM, kind="validation"
            )
        plan_id = plan_id_for(lookup_key)
        try:
            with self._operation("plan_find"):
                existing = self.client.v1.plans.retrieve(plan_id).to_dict()
        except PermanentError as exc:
            if exc.status != 404:
                raise
            params: Any = {
                "id": plan_id,
                "currency": wanted["currency"],
                "amount": wanted["unit_amount"],
                "interval": recurring[0],
                "interval_count": recurring[1],
                "product": {"name": product_name, "metadata": {"lookup_key": lookup_key}},
                "metadata": {"lookup_key": lookup_key},
            }
            with self._operation("plan_create"):
                created = self.client.v1.plans.create(
                    params=params, options={"idempotency_key": idempotency_key}
                )
            return plan_record(created.to_dict())
        have = {
            "currency": existing["currency"],
            "unit_amount": existing["amount"],
            "recurring": (existing["interval"], int(existing.get("interval_count") or 1)),
        }
        _same_or_conflict("plan", existing["id"], lookup_key, have, wanted)
        return plan_record(existing)

    # --- subscriptions ------------------------------------------------------------------
    def subscription_find(self, *, reference: str) -> RemoteRecord | None:
        """The oldest subscription, any status, carrying ``reference`` under its kind's metadata
        key (``BillingApi.subscription_find``).
        """
        found = self._find_by_metadata(
            "subscription_find", "subscriptions", reference_key(reference), reference,
            status="all",
        )  # fmt: skip
        return subscription_record(found) if found is not None else None

    def subscriptions_count(self, *, references: list[str]) -> dict[str, int]:
        """How many subscriptions (any status) name each order reference in their metadata."""
        counts = dict.fromkeys(references, 0)
        params: Any = {"limit": LIST_PAGE, "status": "all"}
        with self._operation("subscription_count"):
            while True:
                page = self.client.v1.subscriptions.list(params=params)
                for obj in page.data:
                    reference = (obj.to_dict().get("metadata") or {}).get(ORDER_KEY)
                    if reference in counts:
                        counts[reference] += 1
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        return counts

    def subscriptions_of_contracts(
        self, *, references: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Every subscription (any status, as Stripe returns it) naming each contract reference
        in its metadata (a rehearsal's books check)."""
        found: dict[str, list[dict[str, Any]]] = {reference: [] for reference in references}
        params: Any = {"limit": LIST_PAGE, "status": "all"}
        with self._operation("subscription_count"):
            while True:
                page = self.client.v1.subscriptions.list(params=params)
                for obj in page.data:
                    body = obj.to_dict()
                    reference = (body.get("metadata") or {}).get(CONTRACT_KEY)
                    if reference in found:
                        found[reference].append(body)
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        return found

    def subscription_create(
        self,
        *,
        reference: str,
        customer_id: str,
        items: list[tuple[str, Decimal]],
        idempotency_key: str,
        contract_reference: str = "",
    ) -> RemoteRecord:
        """Subscribe the customer to prices (or plans) (``BillingApi.subscription_create``), with
        the configured collection method.
        """
        metadata = subscription_metadata(reference, contract_reference)
        price_field = "plan" if self.catalog() == "plans" else "price"
        params: Any = {
            "customer": customer_id,
            "items": [
                {price_field: price_id, "quantity": whole_quantity(qty)} for price_id, qty in items
            ],
            "metadata": metadata,
        }
        if settings.CONNECTOR_BILLING_STRIPE_COLLECTION == "send_invoice":
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = settings.CONNECTOR_BILLING_STRIPE_DAYS_UNTIL_DUE
        with self._operation("subscription_create"):
            subscription = self.client.v1.subscriptions.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return subscription_record(subscription.to_dict())

    def subscription_get(self, *, subscription_id: str) -> RemoteRecord:
        """The subscription ``subscription_id`` (``BillingApi.subscription_get``)."""
        with self._operation("subscription_get"):
            subscription = self.client.v1.subscriptions.retrieve(subscription_id)
        return subscription_record(subscription.to_dict())

    def subscription_update(
        self,
        *,
        subscription_id: str,
        items: list[tuple[str, Decimal]],
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
        proration_behavior: str = "create_prorations",
    ) -> RemoteRecord:
        """Amend a subscription to exactly ``items`` (price id, quantity), with prorations.

        An item whose price is already on the subscription keeps its item id (a quantity
        change); an item whose price is no longer wanted takes a new price in its place;
        what remains is deleted or added. An upgrade, a
        downgrade and a renewal at an uplifted price all go this way: the default
        ``proration_behavior`` credits the unused time at the old price and charges the rest
        of the period at the new one on the next invoice (``always_invoice`` invoices it at
        once, ``none`` changes the price from the next period). The plans catalog spells it
        ``prorate`` and has no ``always_invoice``.
        """
        if proration_behavior not in PRORATION_BEHAVIORS:
            raise PermanentError(
                f"proration_behavior {proration_behavior!r} is not one of {PRORATION_BEHAVIORS}",
                system=SYSTEM,
                kind="validation",
            )
        current = self.subscription_get(subscription_id=subscription_id)
        price_ids = cast(list[str], current.data["price_ids"])
        item_ids = cast(list[str], current.data["item_ids"])
        by_price = dict(zip(price_ids, item_ids, strict=True))
        price_field = "plan" if self.catalog() == "plans" else "price"
        changes: list[dict[str, Any]] = []
        wanted_prices = {price_id for price_id, _ in items}
        # An item whose price goes away carries a new price instead (a renewal's uplift, a
        # plan change): Stripe swaps the item's price in place, prorated like a quantity.
        freed = [item_id for price_id, item_id in by_price.items() if price_id not in wanted_prices]
        for price_id, quantity in items:
            if price_id in by_price:
                changes.append({"id": by_price[price_id], "quantity": whole_quantity(quantity)})
            elif freed:
                changes.append({"id": freed.pop(0), price_field: price_id,
                                "quantity": whole_quantity(quantity)})  # fmt: skip
            else:
                changes.append({price_field: price_id, "quantity": whole_quantity(quantity)})
        changes += [{"id": item_id, "deleted": True} for item_id in freed]
        params: Any = {"items": changes}
        if self.catalog() == "plans":
            if proration_behavior == "always_invoice":
                raise PermanentError(
                    "the Stripe plans catalog cannot invoice a proration at once",
                    system=SYSTEM,
                    kind="validation",
                )
            params["prorate"] = proration_behavior != "none"  # the legacy API's spelling
        else:
            params["proration_behavior"] = proration_behavior
        if metadata:
            params["metadata"] = metadata
        with self._operation("subscription_update"):
            subscription = self.client.v1.subscriptions.update(
                subscription_id, params=params, options={"idempotency_key": idempotency_key}
            )
        return subscription_record(subscription.to_dict())

    def subscription_cancel(
        self,
        *,
        subscription_id: str,
        idempotency_key: str,
        prorate: bool = True,
        at_period_end: bool = False,
    ) -> RemoteRecord:
        """Cancel now, crediting the unused time (``prorate``) on a final invoice; or, with
        ``at_period_end``, set ``cancel_at_period_end``: Stripe bills no further period and
        ends the subscription when the current one runs out
        (``BillingApi.subscription_cancel``)."""
        if at_period_end:
            with self._operation("subscription_cancel"):
                marked = self.client.v1.subscriptions.update(
                    subscription_id,
                    params={"cancel_at_period_end": True},
                    options={"idempotency_key": idempotency_key},
                )
            return subscription_record(marked.to_dict())
        with self._operation("subscription_cancel"):
            subscription = self.client.v1.subscriptions.cancel(
                subscription_id,
                params={"prorate": prorate, "invoice_now": prorate},
                options={"idempotency_key": idempotency_key},
            )
        return subscription_record(subscription.to_dict())

    # --- metered usage ------------------------------------------------------------------
    def usage_report_find(self, *, key: str) -> RemoteRecord | None:
        """Always None: Stripe keeps meter events but has no way to read one back by its
        identifier. A report is sent again under the same key instead, which Stripe takes
        once (``usage_report_create``)."""
        return None

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
        """A meter event of ``quantity`` for the subscription's customer on the metered
        price's meter (``BillingApi.usage_report_create``).

        ``key`` is the event's ``identifier`` (Stripe keeps one event per identifier for at
        least 24 hours) and its ``Idempotency-Key`` (a resend after a lost answer gets the
        first answer back). The event is dated at the end of the period, or now when the
        period has not ended. A price that is not metered, or not on the subscription, is
        refused (``PermanentError``, kind ``validation``) before anything is sent.
        """
        if self.catalog() == "plans":
            raise PermanentError(USAGE_NEEDS_METERS, system=SYSTEM, kind="validation")
        with self._operation("price_get"):
            price = self.client.v1.prices.retrieve(price_id).to_dict()
        event_name = (price.get("metadata") or {}).get(METER_EVENT_KEY)
        if (price.get("recurring") or {}).get("usage_type") != "metered" or not event_name:
            raise PermanentError(
                f"price {price_id} is not a metered price of Tandem's",
                system=SYSTEM,
                kind="validation",
            )
        subscription = self.subscription_get(subscription_id=subscription_id)
        if price_id not in cast(list[str], subscription.data["metered_price_ids"]):
            # The first usage of a product puts its metered price on the subscription: Stripe
            # bills a meter's events only through an item of the subscription.
            with self._operation("subscription_item_create"):
                self.client.v1.subscription_items.create(
                    params={"subscription": subscription_id, "price": price_id,
                            "proration_behavior": "none"},
                    options={"idempotency_key": f"{key}:item"},
                )  # fmt: skip
        end_of_period = dt.datetime.combine(
            period_end, dt.time(23, 59, 59), tzinfo=dt.UTC
        ).timestamp()
        timestamp = int(min(end_of_period, dt.datetime.now(tz=dt.UTC).timestamp()))
        params: Any = {
            "event_name": event_name,
            "identifier": key,
            "timestamp": timestamp,
            "payload": {
                "stripe_customer_id": str(subscription.data["customer_id"]),
                "value": format(quantity.normalize(), "f"),
            },
        }
        with self._operation("usage_report_create"):
            event = self.client.v1.billing.meter_events.create(
                params=params, options={"idempotency_key": key}
            )
        body = event.to_dict()
        return RemoteRecord(
            id=str(body.get("identifier") or key),
            data={
                "key": key,
                "subscription_id": subscription_id,
                "price_id": price_id,
                "event_name": str(body.get("event_name") or event_name),
                "quantity": str((body.get("payload") or {}).get("value", "")),
                "period_start": period_start.isoformat(),
                "period_end": period_end.isoformat(),
            },
        )

    # --- invoices and payments ----------------------------------------------------------
    def invoices_list(self, *, subscription_id: str) -> list[RemoteRecord]:
        """The subscription's invoices, oldest first, with their amounts and payment."""
        records: list[dict[str, Any]] = []
        params: Any = {"subscription": subscription_id, "limit": LIST_PAGE}
        with self._operation("invoice_list"):
            while True:
                page = self.client.v1.invoices.list(params=params)
                records += [invoice.to_dict() for invoice in page.data]
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        records.sort(key=lambda obj: (obj.get("created") or 0, obj["id"]))
        return [invoice_record(body) for body in records]

    def invoice_items_pending(self, *, customer_id: str) -> list[RemoteRecord]:
        """Invoice items not yet on an invoice (prorations waiting for the next one)."""
        with self._operation("invoice_item_list"):
            page = self.client.v1.invoice_items.list(
                params={"customer": customer_id, "limit": LIST_PAGE}
            )
        return [
            RemoteRecord(
                id=str(item["id"]),
                data={
                    "amount": str(decimal_from_minor_units(item["amount"], item["currency"])),
                    "currency": str(item["currency"]).upper(),
                    "proration": bool(item.get("proration")),
                    "description": item.get("description") or "",
                    "subscription_id": _id_of(item.get("subscription")),
                },
            )
            for item in (obj.to_dict() for obj in page.data)
            if not item.get("invoice")
        ]


def _same_or_conflict(
    what: str, remote_id: str, lookup_key: str, have: dict[str, Any], wanted: dict[str, Any]
) -> None:
    if have != wanted:
        raise PermanentError(
            f"{what} {remote_id} for {lookup_key!r} is {price_describe(have)}, "
            f"not {price_describe(wanted)}",
            system=SYSTEM,
            kind="conflict",
        )


def _id_of(value: Any) -> str:
    """An object's id whether the API sent the id or the expanded object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def meter_event_name(lookup_key: str) -> str:
    """The meter event name of a metered price's meter: readable, unique per lookup key."""
    readable = re.sub(r"[^A-Za-z0-9_]+", "_", lookup_key).strip("_")[:60]
    digest = hashlib.sha256(lookup_key.encode()).hexdigest()[:12]
    return f"tandem_{readable}_{digest}"


def customer_record(body: dict[str, Any]) -> RemoteRecord:
    """A Stripe customer as a ``RemoteRecord`` (its Tandem reference, email, name)."""
    return RemoteRecord(
        id=str(body["id"]),
        data={
            "reference": (body.get("metadata") or {}).get(ACCOUNT_KEY, ""),
            "email": body.get("email") or "",
            "name": body.get("name") or "",
        },
    )


def price_record(body: dict[str, Any]) -> RemoteRecord:
    """A Stripe price as a ``RemoteRecord`` (the amount as a Decimal string, its interval)."""
    recurring = recurring_of(body.get("recurring"))
    return RemoteRecord(
        id=str(body["id"]),
        status="active" if body.get("active", True) else "inactive",
        data={
            "lookup_key": body.get("lookup_key") or "",
            "product_id": _id_of(body.get("product")),
            "currency": str(body["currency"]).upper(),
            "unit_amount": str(decimal_from_minor_units(body["unit_amount"], body["currency"])),
            "interval": recurring[0] if recurring else "",
            "interval_count": recurring[1] if recurring else 0,
            "usage_type": (body.get("recurring") or {}).get("usage_type") or "",
            "meter_id": (body.get("recurring") or {}).get("meter") or "",
        },
    )


def plan_record(body: dict[str, Any]) -> RemoteRecord:
    """A legacy Stripe plan as a ``RemoteRecord`` shaped like ``price_record``'s."""
    return RemoteRecord(
        id=str(body["id"]),
        status="active" if body.get("active", True) else "inactive",
        data={
            "lookup_key": (body.get("metadata") or {}).get("lookup_key", ""),
            "product_id": _id_of(body.get("product")),
            "currency": str(body["currency"]).upper(),
            "unit_amount": str(decimal_from_minor_units(body["amount"], body["currency"])),
            "interval": str(body["interval"]),
            "interval_count": int(body.get("interval_count") or 1),
        },
    )


def _item_price_id(item: dict[str, Any]) -> str:
    return _id_of(item.get("price") or item.get("plan"))


def _item_metered(item: dict[str, Any]) -> bool:
    price = item.get("price") or item.get("plan") or {}
    if not isinstance(price, dict):
        return False
    return (price.get("recurring") or price).get("usage_type") == "metered"


def subscription_record(body: dict[str, Any]) -> RemoteRecord:
    """A Stripe subscription as a ``RemoteRecord``: its Tandem references, period (from the
    items since API 2025-03-31), and its items as parallel lists.
    """
    metadata = body.get("metadata") or {}
    every = body["items"]["data"]
    # Metered items (usage) are billed by their meter, not a quantity: kept apart, so an
    # amendment or a renewal never sees nor removes them.
    items = [item for item in every if not _item_metered(item)]
    metered = [item for item in every if _item_metered(item)]
    # Since API version 2025-03-31 the period lives on the items, not the subscription.
    first = every[0] if every else {}
    return RemoteRecord(
        id=str(body["id"]),
        status=str(body["status"]),
        data={
            "customer_id": _id_of(body.get("customer")),
            "order_reference": metadata.get(ORDER_KEY, ""),
            "contract_reference": metadata.get(CONTRACT_KEY, ""),
            "amendment_reference": metadata.get(AMENDMENT_KEY, ""),
            "latest_invoice_id": _id_of(body.get("latest_invoice")),
            "current_period_start": body.get("current_period_start")
            or first.get("current_period_start"),
            "current_period_end": body.get("current_period_end") or first.get("current_period_end"),
            "item_ids": [str(item["id"]) for item in items],
            "price_ids": [_item_price_id(item) for item in items],
            "quantities": [int(item.get("quantity") or 1) for item in items],
            "metered_price_ids": [_item_price_id(item) for item in metered],
            "canceled_at": body.get("canceled_at"),
            "cancel_at_period_end": bool(body.get("cancel_at_period_end")),
        },
    )


def invoice_subscription_id(body: dict[str, Any]) -> str:
    """The invoice's subscription: top level before API 2025-03-31, under ``parent`` since."""
    parent = body.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return _id_of(body.get("subscription") or details.get("subscription"))


def invoice_record(body: dict[str, Any]) -> RemoteRecord:
    """A Stripe invoice as a ``RemoteRecord``: amounts as Decimal strings, lines, payment."""
    currency = str(body["currency"])

    def money(value: Any) -> str:
        return str(decimal_from_minor_units(int(value or 0), currency))

    transitions = body.get("status_transitions") or {}
    return RemoteRecord(
        id=str(body["id"]),
        status=str(body.get("status") or ""),
        number=str(body.get("number") or ""),
        data={
            "subscription_id": invoice_subscription_id(body),
            "customer_id": _id_of(body.get("customer")),
            "currency": currency.upper(),
            "total": money(body.get("total")),
            "amount_paid": money(body.get("amount_paid")),
            "amount_due": money(body.get("amount_due")),
            "finalized_at": transitions.get("finalized_at"),
            "paid_at": transitions.get("paid_at"),
            # The payment's id: the charge (or payment intent) on older API versions.
            "payment_id": _id_of(body.get("charge") or body.get("payment_intent")),
            "lines": [
                {
                    "description": line.get("description") or "",
                    "quantity": int(line.get("quantity") or 1),
                    "amount": money(line.get("amount")),
                    "proration": bool(line.get("proration")),
                }
                for line in (body.get("lines") or {}).get("data", [])
            ],
        },
    )


def _implements(connector: StripeBilling) -> BillingApi:
    return connector  # mypy checks that StripeBilling satisfies BillingApi
