"""Webhook delivery: signed POSTs to Tandem from one background thread, retried on failure.

Each event is stored in the outbox (the sandbox state) with its exact body before delivery,
so retries, duplicates and redeliveries send the same bytes. A delivery is signed at send
time: ``X-Tandem-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``. A failed
delivery (connection error, timeout, non-2xx) is retried with capped exponential backoff.
Fault injection adds a second copy of an event (duplicate) or holds a system's events for a
short window and then sends that batch newest first (reordering).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from sandbox.app import Sandbox

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Tandem-Signature"
USER_AGENT = "TandemSandbox/1.0"


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Tandem-Signature`` header value for ``body`` signed at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class NewEvent:
    """An event just committed to the outbox, with the faults decided for its delivery."""

    event_id: str
    system: str
    copies: int
    reorder_window_s: float | None


@dataclass(frozen=True)
class _Delivery:
    event_id: str
    system: str
    copy: int
    attempt: int


@dataclass(frozen=True)
class _FlushBatch:
    system: str


class WebhookDispatcher:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._condition = threading.Condition()
        self._queue: list[tuple[float, int, _Delivery | _FlushBatch]] = []
        self._order = itertools.count()
        self._batches: dict[str, list[_Delivery]] = {}
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._session.trust_env = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._session.close()

    def clear(self) -> None:
        """Forget everything queued (after a reset of the sandbox)."""
        with self._condition:
            self._queue.clear()
            self._batches.clear()
            self._generation += 1

    def submit(self, events: list[NewEvent]) -> None:
        if not events:
            return
        now = time.monotonic()
        with self._condition:
            for event in events:
                copies = [
                    _Delivery(event.event_id, event.system, n, 1) for n in range(event.copies)
                ]
                if event.reorder_window_s is None:
                    for delivery in copies:
                        self._push(now, delivery)
                    continue
                batch = self._batches.setdefault(event.system, [])
                if not batch:
                    self._push(now + event.reorder_window_s, _FlushBatch(event.system))
                batch.extend(copies)
            self._condition.notify_all()

    def _push(self, due: float, item: _Delivery | _FlushBatch) -> None:
        heapq.heappush(self._queue, (due, next(self._order), item))

    def _next(self) -> _Delivery | None:
        stopping = self._sandbox.stopping
        with self._condition:
            while not stopping.is_set():
                now = time.monotonic()
                if self._queue and self._queue[0][0] <= now:
                    _, _, item = heapq.heappop(self._queue)
                    if isinstance(item, _Delivery):
                        return item
                    # Send the held batch newest first: out of order by construction.
                    batch = self._batches.pop(item.system, [])
                    for delivery in reversed(batch):
                        self._push(now, delivery)
                    continue
                timeout = self._queue[0][0] - now if self._queue else None
                self._condition.wait(timeout=min(timeout, 1.0) if timeout is not None else 1.0)
        return None

    def _run(self) -> None:
        while True:
            delivery = self._next()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            except Exception:  # the delivery thread must survive any one bad delivery
                logger.exception("webhook delivery of %s failed unexpectedly", delivery.event_id)

    def _deliver(self, delivery: _Delivery) -> None:
        """POST one copy of an event, record the attempt, and schedule a retry if it failed."""
        sandbox = self._sandbox
        with sandbox.lock:
            generation = self._generation
            event = sandbox.state.webhooks.get(delivery.event_id)
            base_url = sandbox.settings["webhook_url"]
            if event is None:
                return
            if base_url is None:
                event["status"] = "held"
                sandbox.mark_dirty()
                return
            body = event["body"].encode("utf-8")
            event_type = event["event_type"]
        outcome, delivered = self._post(delivery, base_url, body, event_type)
        with sandbox.lock:
            event = sandbox.state.webhooks.get(delivery.event_id)
            if event is None or generation != self._generation:
                return
            retry_in = self._attempt_record(event, delivery, outcome, delivered=delivered)
            sandbox.mark_dirty()
        if retry_in is not None:
            with self._condition:
                self._push(
                    time.monotonic() + retry_in,
                    _Delivery(
                        delivery.event_id, delivery.system, delivery.copy, delivery.attempt + 1
                    ),
                )
                self._condition.notify_all()

    def _post(
        self, delivery: _Delivery, base_url: str, body: bytes, event_type: str
    ) -> tuple[dict[str, object], bool]:
        """Send the signed delivery; what happened (as recorded on the event), and whether the
        receiver took it (a 2xx)."""
        config = self._sandbox.config
        secret = config.webhook_secrets[delivery.system]
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=timestamp, body=body),
            "X-Tandem-Event-Id": delivery.event_id,
            "X-Tandem-Event-Type": event_type,
            "X-Tandem-Delivery-Attempt": str(delivery.attempt),
        }
        url = f"{base_url}{delivery.system}/"
        started = time.monotonic()
        try:
            response = self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=(2.0, config.webhook_timeout_s),
                allow_redirects=False,
            )
            outcome: dict[str, object] = {"status_code": response.status_code}
            delivered = 200 <= response.status_code < 300
        except requests.RequestException as exc:
            outcome = {"error": type(exc).__name__}
            delivered = False
        outcome.update(
            attempt=delivery.attempt,
            copy=delivery.copy + 1,
            at=time.time(),
            ms=round((time.monotonic() - started) * 1000),
        )
        return outcome, delivered

    def _attempt_record(
        self,
        event: dict[str, Any],
        delivery: _Delivery,
        outcome: dict[str, object],
        *,
        delivered: bool,
    ) -> float | None:
        """Add the attempt to the event and settle its status; seconds until the next attempt
        (capped exponential backoff), or None when there is none. Call it holding the lock."""
        config = self._sandbox.config
        event["attempts"].append(outcome)
        if delivered:
            event["deliveries"] += 1
            event["status"] = "delivered"
            return None
        if delivery.attempt < config.webhook_max_attempts:
            return min(
                config.webhook_retry_cap_s,
                config.webhook_retry_base_s * 2 ** (delivery.attempt - 1),
            )
        if event["status"] != "delivered":
            event["status"] = "failed"
        return None
