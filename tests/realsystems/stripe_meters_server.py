"""A loopback HTTP server answering as Stripe documents its Billing Meters, for the calls
localstripe does not have.

localstripe 1.15 knows only the legacy Plans API: no ``/v1/prices``, no meters, no meter
events. The Stripe connector's metered usage (a meter per metered price, a price on it, the
price added to the subscription as an item, a meter event per usage key) is tested against
this server instead, through the official SDK and Tandem's transport, as against Stripe:

- form-encoded requests, ``Authorization: Bearer sk_test_…`` (401 otherwise), Stripe-shaped
  objects and errors (``{"error": {"type": "invalid_request_error", "message": …}}``);
- ``Idempotency-Key`` on a POST: the same key with the same body answers the stored response
  again (``Idempotent-Replayed: true``), with another body a 400 ``idempotency_error``;
- a meter event's ``identifier`` is unique (a second one is refused), its ``timestamp``
  within the past 35 days and at most 5 minutes ahead, its ``event_name`` must be an active
  meter's and its payload must name a customer and a numeric value.

Only what the connector calls is here; subscriptions and customers are put in place by the
test (``subscription_put``). Runs in a thread on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_KEY = "sk_test_tandem_meters"
MAX_AGE_S = 35 * 86400
MAX_AHEAD_S = 300


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 code: str = "", param: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status, message, kind, code, param,
        )  # fmt: skip

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` form fields as nested dicts (lists stay dicts keyed "0", "1", …)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


@dataclass
class StripeMeters:
    """The server's state, readable by the test as Stripe's own records."""

    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # "POST /v1/billing/meter_events", …
    _idempotent: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def subscription_put(self, *, customer: str, price_id: str, quantity: int) -> str:
        """A subscription of ``customer`` to a licensed price already here; returns its id."""
        price = self.prices[price_id]
        subscription_id = self._id("sub")
        now = int(time.time())
        self.subscriptions[subscription_id] = {
            "id": subscription_id, "object": "subscription", "status": "active",
            "customer": customer, "metadata": {}, "cancel_at_period_end": False,
            "items": {"object": "list", "data": [
                {"id": self._id("si"), "object": "subscription_item", "price": price,
                 "quantity": quantity, "current_period_start": now,
                 "current_period_end": now + 30 * 86400}]},
        }  # fmt: skip
        return subscription_id

    def price_put(self, *, lookup_key: str, unit_amount: int, currency: str = "gbp") -> str:
        """A licensed monthly price (the subscription's seats); returns its id."""
        price_id = self._id("price")
        self.prices[price_id] = {
            "id": price_id, "object": "price", "active": True, "currency": currency,
            "unit_amount": unit_amount, "lookup_key": lookup_key, "product": self._id("prod"),
            "metadata": {}, "recurring": {"interval": "month", "interval_count": 1,
                                          "usage_type": "licensed", "meter": None},
        }  # fmt: skip
        return price_id

    # --- the API -------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, Any], form: dict[str, Any],
               raw: str, idempotency_key: str) -> tuple[int, dict[str, Any]]:  # fmt: skip
        with self._lock:
            self.requests.append(f"{method} {path}")
            if method == "POST" and idempotency_key:
                stored = self._idempotent.get(idempotency_key)
                if stored is not None:
                    if stored[0] != f"{path}?{raw}":
                        raise StripeError(
                            400, "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.", kind="idempotency_error",
                        )  # fmt: skip
                    return stored[1], {**stored[2], "__replayed": True}
            try:
                status, body = 200, self._route(method, path, query, form)
            except StripeError as exc:
                if exc.status >= 500:
                    raise
                status, body = exc.status, exc.body()
            if method == "POST" and idempotency_key:
                self._idempotent[idempotency_key] = (f"{path}?{raw}", status, body)
            return status, body

    def _route(self, method: str, path: str, query: dict[str, Any],
               form: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/v1/prices":
            wanted = list((query.get("lookup_keys") or {}).values())
            found = [p for p in self.prices.values() if not wanted or p["lookup_key"] in wanted]
            return _list("/v1/prices", found[: int(query.get("limit") or 10)])
        if method == "POST" and path == "/v1/prices":
            return self._price_create(form)
        if method == "GET" and parts[:2] == ["v1", "prices"] and len(parts) == 3:
            return self._get(self.prices, parts[2], "price")
        if method == "GET" and path == "/v1/billing/meters":
            found = [m for m in self.meters.values()
                     if query.get("status") in (None, m["status"])]  # fmt: skip
            return _list("/v1/billing/meters", found)
        if method == "POST" and path == "/v1/billing/meters":
            return self._meter_create(form)
        if method == "POST" and path == "/v1/billing/meter_events":
            return self._meter_event_create(form)
        if method == "GET" and parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
            return self._get(self.subscriptions, parts[2], "subscription")
        if method == "POST" and path == "/v1/subscription_items":
            return self._item_create(form)
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _get(store: dict[str, dict[str, Any]], object_id: str, what: str) -> dict[str, Any]:
        if object_id not in store:
            raise StripeError(404, f"No such {what}: '{object_id}'", code="resource_missing")
        return store[object_id]

    def _price_create(self, form: dict[str, Any]) -> dict[str, Any]:
        recurring = form.get("recurring") or {}
        if recurring.get("usage_type") == "metered":
            meter = recurring.get("meter")
            if not meter:
                raise StripeError(400, "Metered prices must be backed by a meter.",
                                  param="recurring[meter]")  # fmt: skip
            self._get(self.meters, meter, "billing meter")
        lookup_key = form.get("lookup_key")
        if lookup_key and any(p["lookup_key"] == lookup_key for p in self.prices.values()):
            raise StripeError(400, f"A price with lookup key {lookup_key} already exists.",
                              param="lookup_key")  # fmt: skip
        price_id = self._id("price")
        price = {
            "id": price_id, "object": "price", "active": True, "currency": form["currency"],
            "unit_amount": int(form["unit_amount"]), "lookup_key": lookup_key,
            "product": self._id("prod"), "metadata": form.get("metadata") or {},
            "recurring": {
                "interval": recurring["interval"],
                "interval_count": int(recurring.get("interval_count") or 1),
                "usage_type": recurring.get("usage_type") or "licensed",
                "meter": recurring.get("meter"),
            } if recurring else None,
        }  # fmt: skip
        self.prices[price_id] = price
        return price

    def _meter_create(self, form: dict[str, Any]) -> dict[str, Any]:
        event_name = form.get("event_name") or ""
        if any(m["event_name"] == event_name and m["status"] == "active"
               for m in self.meters.values()):  # fmt: skip
            raise StripeError(400, f"An active meter with event_name `{event_name}` already "
                              "exists.", param="event_name")  # fmt: skip
        meter_id = self._id("mtr")
        meter = {
            "id": meter_id, "object": "billing.meter", "status": "active",
            "display_name": form.get("display_name") or "", "event_name": event_name,
            "default_aggregation": form.get("default_aggregation") or {},
            "customer_mapping": form.get("customer_mapping") or {},
            "value_settings": form.get("value_settings") or {},
        }  # fmt: skip
        self.meters[meter_id] = meter
        return meter

    def _item_create(self, form: dict[str, Any]) -> dict[str, Any]:
        subscription = self._get(self.subscriptions, form.get("subscription", ""), "subscription")
        price = self._get(self.prices, form.get("price", ""), "price")
        if any(item["price"]["id"] == price["id"] for item in subscription["items"]["data"]):
            raise StripeError(400, "Cannot add multiple subscription items with the same price.")
        item = {"id": self._id("si"), "object": "subscription_item", "price": price,
                "subscription": subscription["id"]}  # fmt: skip
        if (price["recurring"] or {}).get("usage_type") != "metered":
            item["quantity"] = int(form.get("quantity") or 1)
        subscription["items"]["data"].append(item)
        return item

    def _meter_event_create(self, form: dict[str, Any]) -> dict[str, Any]:
        event_name = form.get("event_name") or ""
        if not any(m["event_name"] == event_name and m["status"] == "active"
                   for m in self.meters.values()):  # fmt: skip
            raise StripeError(400, f"No active meter was found with event_name `{event_name}`.",
                              param="event_name")  # fmt: skip
        identifier = form.get("identifier") or self._id("mev")
        if any(e["identifier"] == identifier for e in self.meter_events):
            raise StripeError(400, f"An event with identifier {identifier} already exists.",
                              param="identifier")  # fmt: skip
        now = int(time.time())
        timestamp = int(form.get("timestamp") or now)
        if timestamp < now - MAX_AGE_S or timestamp > now + MAX_AHEAD_S:
            raise StripeError(400, "Timestamp must be within the past 35 calendar days or up to "
                              "5 minutes in the future.", param="timestamp")  # fmt: skip
        payload = form.get("payload") or {}
        try:
            Decimal(payload.get("value", ""))
        except InvalidOperation:
            raise StripeError(400, "The payload's value must be a number.",
                              param="payload[value]") from None  # fmt: skip
        if not str(payload.get("stripe_customer_id", "")).startswith("cus_"):
            raise StripeError(400, "The payload must name a customer.",
                              param="payload[stripe_customer_id]")  # fmt: skip
        event = {"object": "billing.meter_event", "event_name": event_name,
                 "identifier": identifier, "timestamp": timestamp, "created": now,
                 "livemode": False, "payload": payload}  # fmt: skip
        self.meter_events.append(event)
        return event

    # --- the server ----------------------------------------------------------------------
    def start(self) -> StripeMeters:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    status, body = (
                        401,
                        StripeError(
                            401, "Invalid API Key provided.", kind="invalid_request_error"
                        ).body(),
                    )
                    replayed = False
                else:
                    query = _unflatten(parse_qsl(split.query, keep_blank_values=True))
                    form = _unflatten(parse_qsl(raw, keep_blank_values=True))
                    status, body = state.handle(
                        self.command, split.path, query, form, raw,
                        self.headers.get("Idempotency-Key") or "",
                    )  # fmt: skip
                    replayed = bool(body.pop("__replayed", False))
                content = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.send_header("Request-Id", f"req_{next(state._ids):06d}")
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _list(url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "url": url, "has_more": False, "data": data}
