"""The sandbox itself, independent of HTTP: state, systems, faults, webhooks and the clock.

``Sandbox.handle`` takes one request and returns what to answer (or that the answer is to be
lost). A request to a system goes through, in order: authentication, injected latency,
injected throttling and errors, routing and body parsing, the idempotency store, the
handler (under the sandbox lock: check, change and record happen atomically), then the
webhook outbox and the "lose the response after commit" fault.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.config import CONTROL_TOKEN_HEADER, SYSTEMS, FaultSettings, SandboxConfig
from sandbox.errors import ApiError, generic_error, render
from sandbox.ids import stripe_id
from sandbox.state import SandboxState, state_load, state_save
from sandbox.systems import systems_build
from sandbox.systems.base import Call, Event, Reply, iso_utc
from sandbox.systems.erp import order_approve, order_reject
from sandbox.webhooks import NewEvent, WebhookDispatcher

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
IDEMPOTENCY_KEY_MAX = 255
TICK_S = 0.05


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, default=json_default, separators=(",", ":")).encode("utf-8")


@dataclass
class Request:
    method: str
    target: str
    # A case-insensitive header mapping (``http.client.HTTPMessage`` from the server).
    headers: Mapping[str, str] | Message
    body: bytes = b""


@dataclass
class Outcome:
    """What to send back; ``lose`` means send nothing and drop the connection after ``hold_s``."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    lose: bool = False
    hold_s: float = 0.0


def json_outcome(status: int, body: Any, headers: dict[str, str] | None = None) -> Outcome:
    return Outcome(
        status, json_bytes(body), {"Content-Type": "application/json", **(headers or {})}
    )


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.systems = systems_build()
        self.collections = {name: system.collections for name, system in self.systems.items()}
        if config.state_file is not None:
            self.state = state_load(config.state_file, self.collections)
        else:
            self.state = SandboxState.empty(self.collections)
        self.settings: dict[str, Any] = {
            "webhook_url": config.webhook_url,
            "erp_approval_delay_s": config.erp_approval_delay_s,
        }
        self.faults: dict[str, FaultSettings] = {}
        self._rngs: dict[str, random.Random] = {}
        self._faults_reset()
        self.webhooks = WebhookDispatcher(self)
        self._request_numbers = itertools.count(1)
        self._dirty = False
        self._last_flush = time.monotonic()
        self._clock: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.webhooks.start()
        self._clock = threading.Thread(target=self._tick_forever, name="sandbox-clock", daemon=True)
        self._clock.start()
        with self.lock:
            pending = [
                NewEvent(event_id, event["system"], 1, None)
                for event_id, event in self.state.webhooks.items()
                if event["status"] in ("pending", "held")
            ]
        self.webhooks.submit(pending)

    def stop(self) -> None:
        self.stopping.set()
        self.webhooks.stop()
        if self._clock is not None:
            self._clock.join(timeout=5)
        self.flush()

    def _faults_reset(self) -> None:
        self.faults = {system: FaultSettings() for system in SYSTEMS}
        self._rngs = {}
        for system in SYSTEMS:
            self._rngs[system] = random.Random(f"{self.config.seed}:{system}:requests")
            self._rngs[f"{system}:webhooks"] = random.Random(f"{self.config.seed}:{system}:hooks")

    def reset(self) -> None:
        """Back to an empty sandbox: no records, no outbox, no faults, generators re-seeded."""
        with self.lock:
            self.state = SandboxState.empty(self.collections)
            self._faults_reset()
            self.webhooks.clear()
            self.mark_dirty()

    def mark_dirty(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        """Write the state file now if anything changed since the last write."""
        if self.config.state_file is None:
            return
        with self.lock:
            if not self._dirty:
                return
            payload = json.dumps(self.state.to_json(), default=json_default, separators=(",", ":"))
            self._dirty = False
            self._last_flush = time.monotonic()
        state_save(payload, self.config.state_file)

    def _tick_forever(self) -> None:
        while not self.stopping.wait(TICK_S):
            try:
                self.erp_approve_due()
                if time.monotonic() - self._last_flush >= self.config.state_flush_interval_s:
                    self.flush()
            except Exception:  # the clock must keep ticking whatever one tick hit
                logger.exception("sandbox clock tick failed")

    # --- requests -----------------------------------------------------------------------
    def handle(self, request: Request) -> Outcome:
        parts = urlsplit(request.target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        if path == "/_control" or path.startswith("/_control/"):
            from sandbox.control import control_handle

            if not (request.method == "GET" and path == "/_control/health"):
                presented = request.headers.get(CONTROL_TOKEN_HEADER) or ""
                if not hmac.compare_digest(presented.encode(), self.config.control_token.encode()):
                    reason = f"the control API needs the {CONTROL_TOKEN_HEADER} header"
                    return json_outcome(401, {"error": reason})
            return control_handle(self, request.method, path, query, request.body)
        name, _, rest = path.lstrip("/").partition("/")
        system = self.systems.get(name)
        if system is None:
            return json_outcome(
                404,
                {
                    "error": f"no system at /{name}/; the sandbox serves "
                    + ", ".join(f"/{known}/" for known in self.systems)
                },
            )
        request_id = f"req_{next(self._request_numbers):08d}"
        try:
            outcome = self._system_handle(system.name, request, "/" + rest, query, request_id)
        except ApiError as error:
            outcome = json_outcome(error.status, render(system.style, error), error.headers)
            if error.status == 401:
                outcome.headers["WWW-Authenticate"] = 'Bearer realm="sandbox"'
        outcome.headers.setdefault("Request-Id", request_id)
        return outcome

    def _authenticate(self, name: str, headers: Mapping[str, str] | Message) -> None:
        expected = self.config.api_keys[name]
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            shown = "(none)" if not token else f"****{token[-4:]}" if len(token) > 8 else "****"
            raise generic_error(self.systems[name].style, "unauthorized", 401, shown)

    def _system_handle(
        self, name: str, request: Request, path: str, query: dict[str, list[str]], request_id: str
    ) -> Outcome:
        """One request to system ``name``, in the order the module's docstring gives."""
        system = self.systems[name]
        style = system.style
        self._authenticate(name, request.headers)
        faults, lose_draw = self._faults_inject(name, style, request_id)
        route, params = system.match(request.method, path)
        body = self._parse_body(style, request)
        key = self._idempotency_key(style, request)
        fingerprint = hashlib.sha256(
            f"{request.method} {path}\n".encode()
            + json.dumps(body, default=json_default, sort_keys=True).encode()
        ).hexdigest()
        with self.lock:
            if key is not None:
                replayed = self._idempotent_replay(name, style, key, fingerprint)
                if replayed is not None:
                    return replayed
            call = Call(
                system=name,
                method=request.method,
                path=path,
                params=params,
                query=query,
                body=body,
                state=self.state,
                seed=self.config.seed,
                now=dt.datetime.now(dt.UTC),
                settings=dict(self.settings),
            )
            reply = route.handler(call)
            outcome = self._reply_outcome(reply)
            if key is not None:
                outcome.headers["Idempotency-Key"] = key
                if reply.status < 400 or reply.status == 402:
                    self._idempotent_store(name, key, fingerprint, outcome, call)
            new_events = self._events_record(call.events, call.now)
            if request.method in MUTATING_METHODS:
                self.mark_dirty()
        self.webhooks.submit(new_events)
        if (
            request.method in MUTATING_METHODS
            and reply.status < 300
            and lose_draw < faults.lose_response_after_commit_rate
        ):
            return Outcome(lose=True, hold_s=faults.lose_response_hold_ms / 1000)
        return outcome

    def _faults_inject(self, name: str, style: str, request_id: str) -> tuple[FaultSettings, float]:
        """Wait the injected latency and raise an injected throttle or server error; returns
        the system's faults and the draw that decides whether the response is lost."""
        with self.lock:
            faults = self.faults[name]
            rng = self._rngs[name]
            throttle_draw, error_draw, lose_draw = rng.random(), rng.random(), rng.random()
        if faults.latency_ms:
            self.stopping.wait(faults.latency_ms / 1000)
        if throttle_draw < faults.throttle_rate:
            raise generic_error(
                style, "throttled", 429, headers={"Retry-After": str(faults.retry_after_s)}
            )
        if error_draw < faults.error_rate:
            if error_draw < faults.error_rate / 2:
                raise generic_error(style, "unavailable", 503, request_id)
            raise generic_error(style, "server_error", 500, request_id)
        return faults, lose_draw

    @staticmethod
    def _idempotency_key(style: str, request: Request) -> str | None:
        """A POST's ``Idempotency-Key`` (None without one); refused when empty or too long."""
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
            raise generic_error(
                style,
                "idempotency_key",
                400,
                f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters long.",
            )
        return key

    def _idempotent_replay(
        self, name: str, style: str, key: str, fingerprint: str
    ) -> Outcome | None:
        """The stored answer to ``key`` (None if new); the key with another request is a 422.
        Call it holding the lock."""
        stored = self.state.idempotency[name].get(key)
        if stored is None:
            return None
        if stored["fingerprint"] != fingerprint:
            raise generic_error(style, "idempotency_mismatch", 422, key)
        return Outcome(
            stored["status"],
            stored["body"].encode("utf-8"),
            {**stored["headers"], "Idempotency-Key": key, "Idempotent-Replayed": "true"},
        )

    def _idempotent_store(
        self, name: str, key: str, fingerprint: str, outcome: Outcome, call: Call
    ) -> None:
        """Keep the answer to ``key`` for replays. Call it holding the lock."""
        self.state.idempotency[name][key] = {
            "fingerprint": fingerprint,
            "status": outcome.status,
            "body": outcome.body.decode("utf-8"),
            "headers": {k: v for k, v in outcome.headers.items() if k != "Idempotency-Key"},
            "created": call.unix_now,
        }

    def _parse_body(self, style: str, request: Request) -> dict[str, Any]:
        if request.method not in BODY_METHODS or not request.body.strip():
            return {}
        try:
            body = json.loads(request.body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise generic_error(style, "bad_json", 400, str(exc)) from None
        if not isinstance(body, dict):
            raise generic_error(style, "bad_json", 400, "the request body must be a JSON object")
        return body

    @staticmethod
    def _reply_outcome(reply: Reply) -> Outcome:
        if reply.body is None:
            return Outcome(reply.status, b"", dict(reply.headers))
        return json_outcome(reply.status, reply.body, reply.headers)

    # --- events -------------------------------------------------------------------------
    def _events_record(self, events: list[Event], now: dt.datetime) -> list[NewEvent]:
        """Put ``events`` in the outbox (caller holds the lock); decide their delivery faults."""
        recorded = []
        for event in events:
            number = self.state.next_number("event")
            event_id = stripe_id("evt", number, seed=str(self.config.seed), width=24)
            envelope: dict[str, Any] = {
                "event_id": event_id,
                "event_type": event.event_type,
                "schema_version": 1,
                "occurred_at": iso_utc(now),
                "data": event.data,
            }
            if event.correlation_id:
                envelope["correlation_id"] = event.correlation_id[:64]
            faults = self.faults[event.system]
            duplicate = self._rngs[f"{event.system}:webhooks"].random() < (
                faults.duplicate_webhook_rate
            )
            self.state.webhooks[event_id] = {
                "event_id": event_id,
                "system": event.system,
                "event_type": event.event_type,
                "body": json.dumps(envelope, default=json_default, separators=(",", ":")),
                "status": "pending",
                "duplicate": duplicate,
                "deliveries": 0,
                "attempts": [],
                "created_at": iso_utc(now),
            }
            recorded.append(
                NewEvent(
                    event_id,
                    event.system,
                    2 if duplicate else 1,
                    faults.reorder_window_ms / 1000 if faults.reorder_webhooks else None,
                )
            )
        if recorded:
            self.mark_dirty()
        return recorded

    def webhooks_redeliver(self, event_ids: list[str]) -> None:
        with self.lock:
            for event_id in event_ids:
                self.state.webhooks[event_id]["status"] = "pending"
            systems = {event_id: self.state.webhooks[event_id]["system"] for event_id in event_ids}
            self.mark_dirty()
        self.webhooks.submit([NewEvent(e, systems[e], 1, None) for e in event_ids])

    # --- ERP approvals ------------------------------------------------------------------
    def erp_approve(self, internal_id: str) -> dict[str, Any]:
        """Approve one pending sales order now; raise LookupError / ValueError otherwise."""
        with self.lock:
            order = self.state.systems["erp"]["salesorders"].get(internal_id)
            if order is None:
                raise LookupError(f"no sales order with internalId {internal_id}")
            if order["orderStatus"] != "pendingApproval":
                raise ValueError(
                    f"sales order {order['tranId']} is {order['orderStatus']}, not pendingApproval"
                )
            new_events = self._erp_approve_locked(order)
        self.webhooks.submit(new_events)
        return order

    def erp_reject(self, internal_id: str, reason: str) -> dict[str, Any]:
        """Reject one pending sales order now (finance said no); raise LookupError /
        ValueError otherwise. Emits ``order.rejected``."""
        with self.lock:
            order = self.state.systems["erp"]["salesorders"].get(internal_id)
            if order is None:
                raise LookupError(f"no sales order with internalId {internal_id}")
            if order["orderStatus"] != "pendingApproval":
                raise ValueError(
                    f"sales order {order['tranId']} is {order['orderStatus']}, not pendingApproval"
                )
            now = dt.datetime.now(dt.UTC)
            self.state.systems["erp"]["_approval_due"].pop(internal_id, None)
            data = order_reject(order, now, reason)
            self.mark_dirty()
            new_events = self._events_record(
                [Event("erp", "order.rejected", data, order["externalId"])], now
            )
        self.webhooks.submit(new_events)
        return order

    def _erp_approve_locked(self, order: dict[str, Any]) -> list[NewEvent]:
        now = dt.datetime.now(dt.UTC)
        self.state.systems["erp"]["_approval_due"].pop(order["internalId"], None)
        data = order_approve(order, now)
        self.mark_dirty()
        return self._events_record([Event("erp", "order.accepted", data, order["externalId"])], now)

    def erp_approve_due(self) -> None:
        now = time.time()
        new_events: list[NewEvent] = []
        with self.lock:
            due = self.state.systems["erp"]["_approval_due"]
            for internal_id in [key for key, at in due.items() if at <= now]:
                due.pop(internal_id)
                order = self.state.systems["erp"]["salesorders"].get(internal_id)
                if order is not None and order["orderStatus"] == "pendingApproval":
                    new_events += self._erp_approve_locked(order)
        self.webhooks.submit(new_events)
