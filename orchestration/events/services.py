"""Writes for inbound events: receive a delivery (store it raw first), then process it.

Receiving is one INSERT: the row holds the raw body and the verdict on the delivery
(signature, JSON, envelope). An accepted event is processed by a worker, enqueued on commit;
the row stays ``received`` until then, so a lost broker message leaves a visible row that a
sweeper can re-enqueue.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import DATA_REFUSALS, Refused
from core.logging import correlation
from core.params import json_depth
from core.problems import Category, Problem, Severity, Team, problem_raise
from orchestration.events.catalog import event_validate
from orchestration.events.errors import EventRejected, SignatureRejected
from orchestration.events.handlers import event_workflow_trigger
from orchestration.events.selectors import throttled_key
from orchestration.events.signatures import (
    SIGNATURE_HEADER,
    STRIPE_SIGNATURE_HEADER,
    signature_scheme,
    signature_verify,
    stripe_signature_verify,
    webhook_secrets,
)
from orchestration.events.stripe_events import is_stripe_event, stripe_event_canonical
from orchestration.models import (
    DEAD_LETTER_STATUSES,
    DeadLetterAction,
    InboundEvent,
    InboundStatus,
)

logger = logging.getLogger(__name__)

KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Correlation-Id",
                "X-Tandem-Delivery")  # fmt: skip


@dataclass(frozen=True)
class Receipt:
    """What the endpoint answers, and the row the delivery was stored as."""

    http_status: int
    body: dict[str, str]
    event: InboundEvent


# (HTTP status, reason) of a refused delivery.
Rejection = tuple[int, str]


def _storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: text and JSON columns refuse NUL characters, which
    anyone can send (a raw byte, a ``\\u0000`` escape, a header)."""
    return text.replace("\x00", "\ufffd")


def _headers_kept(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {name: _storable(headers[name][:255]) for name in KEPT_HEADERS if headers.get(name)}
    for header in (SIGNATURE_HEADER, STRIPE_SIGNATURE_HEADER):
        signature = headers.get(header, "")
        if signature:
            # The timestamp helps explain a rejection; the MAC itself is of no use to a reader.
            stamps = [p.strip() for p in signature.split(",") if p.strip().startswith("t=")]
            kept[header] = _storable(",".join([*stamps[:1], "v1=…"]))
    return kept


def _text(value: Any, limit: int) -> str:
    return _storable(value[:limit]) if isinstance(value, str) else ""


def webhook_throttled_count(*, system: str) -> int:
    """Count a delivery refused by the rate limit (not stored: the point of the limit) for
    ``system`` today (UTC), kept two days in the cache; the dead-letter view shows the count.
    Logged on the first of the day and every thousandth, so a flood does not flood the log."""
    key = throttled_key(system, timezone.now().date())
    if cache.add(key, 1, timeout=2 * 86400):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=2 * 86400)
            count = 1
    if count == 1 or count % 1000 == 0:
        logger.warning(
            "webhook deliveries to %s refused by the rate limit today: %s", system, count
        )
    return count


def received_grace() -> dt.timedelta:
    """How long after it arrived an event still ``received`` is deemed to have lost its
    processing message (broker restart, killed worker) or to be waiting for what it refers
    to, and is tried again (``INBOUND_RECEIVED_GRACE_SECONDS``, 2 minutes by default)."""
    return dt.timedelta(seconds=settings.INBOUND_RECEIVED_GRACE_SECONDS)


def inbound_event_enqueue(inbound_event_id: int, *, swept: bool = False) -> None:
    """Send a stored event to a worker for processing; never raises.

    Call it after the row is committed (``transaction.on_commit``). When the broker is down
    the failure is logged and the row stays ``received``: ``inbound_events_sweep`` sends it
    again, so a lost message delays an event but never loses it. ``swept`` tells the task
    the event was re-sent by the sweeper.
    """
    from orchestration.tasks import process_inbound_event

    try:
        process_inbound_event.apply_async(args=[inbound_event_id], kwargs={"swept": swept})
    except Exception:  # the broker is down: the row stays 'received' for the sweeper
        logger.exception("could not enqueue inbound event %s", inbound_event_id)


SWEEP_BATCH = 1000


def inbound_events_sweep(*, now: dt.datetime | None = None) -> int:
    """Send events still ``received`` after ``received_grace()`` to processing again.

    The row, not the broker message, is the truth: this recovers an event whose message was
    lost. Events that failed fewer times go first, so events that keep failing (until they
    are marked dead, ``inbound_event_fail``) never hold back one whose message was simply lost.
    Returns how many were sent.
    """
    now = now or timezone.now()
    stale = list(
        InboundEvent.objects.filter(
            status=InboundStatus.RECEIVED, received_at__lt=now - received_grace()
        )
        .order_by("attempts", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for pk in stale:
        inbound_event_enqueue(pk, swept=True)
    return len(stale)


def inbound_event_receive(
    *,
    system: str,
    raw_body: bytes,
    headers: Mapping[str, str],
    client: str = "",
    now: float | None = None,
) -> Receipt:
    """Store one webhook delivery (from address ``client``) and decide the answer. Never
    raises for a bad delivery.

    Authentic deliveries with an event id are unique per (system, event id): a repeat is
    absorbed (counted on the first row) and answered as a duplicate. Anything else that is
    wrong is stored as ``rejected`` with the reason, and answered 4xx with that reason; an
    unauthenticated delivery refused like one stored in the last hour from the same address
    is only counted on that row (``UNAUTHENTICATED_GROUPED_FOR``).
    """
    row = InboundEvent(
        system=system,
        signature_valid=False,
        raw_body="",
        headers=_headers_kept(headers),
        correlation_id=_text(headers.get("X-Correlation-Id"), 64),
        client_address=client[:45],
    )
    rejection, payload = _delivery_check(row, raw_body=raw_body, headers=headers, now=now)
    # Only an authenticated delivery is kept whole; of any other, a prefix to recognise it.
    kept = raw_body if row.signature_valid else raw_body[:UNAUTHENTICATED_BODY_KEPT]
    row.raw_body = _storable(kept.decode("utf-8", errors="replace"))
    if is_stripe_event(payload) and signature_scheme(system) == "stripe":
        rejection = _stripe_envelope_read(row, payload, rejection)
    elif isinstance(payload, dict):
        rejection = _envelope_read(row, payload, rejection)
        if rejection is None:
            rejection = _schema_check(row, payload)
    elif rejection is None:
        rejection = (400, "the payload is not a JSON object")

    if rejection is not None:
        status, reason = rejection
        row.mark_rejected(reason=reason, canonical_type=row.canonical_type)
        answer = {"status": "rejected", "reason": reason}
        if not row.signature_valid:
            counted_on = _unauthenticated_repeat_count(row)
            if counted_on is not None:
                return Receipt(http_status=status, body=answer, event=counted_on)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError:  # signed, and repeating a stored (system, event id)
            return _duplicate_absorbed(row)
        logger.warning("webhook from %s rejected: %s", system, reason, extra={"system": system})
        return Receipt(http_status=status, body=answer, event=row)
    return _accepted_or_duplicate(row)


# How much of an unauthenticated delivery's body is stored (the rest is dropped unread).
UNAUTHENTICATED_BODY_KEPT = 256
# An unauthenticated delivery refused for the same reason as one stored from the same address
# within this window is counted on that row instead of stored: an unsigned flood grows a
# counter, not the table.
UNAUTHENTICATED_GROUPED_FOR = dt.timedelta(hours=1)


def _unauthenticated_repeat_count(row: InboundEvent) -> InboundEvent | None:
    """Count ``row`` (unauthenticated, rejected, unsaved) on the latest stored row of the same
    system, address and reason within ``UNAUTHENTICATED_GROUPED_FOR``; that row, or None."""
    now = timezone.now()
    latest = (
        InboundEvent.objects.filter(
            system=row.system,
            signature_valid=False,
            status=InboundStatus.REJECTED,
            client_address=row.client_address,
            rejection_reason=row.rejection_reason,
            received_at__gte=now - UNAUTHENTICATED_GROUPED_FOR,
        )
        .order_by("-received_at", "-pk")
        .first()
    )
    if latest is None:
        return None
    InboundEvent.objects.filter(pk=latest.pk).update(
        duplicate_deliveries=F("duplicate_deliveries") + 1, last_delivered_at=now
    )
    latest.duplicate_deliveries += 1
    latest.last_delivered_at = now
    return latest


def _delivery_check(
    row: InboundEvent, *, raw_body: bytes, headers: Mapping[str, str], now: float | None
) -> tuple[Rejection | None, Any]:
    """Check the size, the signature (marking ``row.signature_valid``) and the JSON.

    Returns the first reason to refuse (None if none) and the parsed payload (None if the
    body is too large or not JSON).
    """
    max_bytes = settings.WEBHOOK_MAX_BODY_BYTES
    if len(raw_body) > max_bytes:
        return (413, f"body is larger than {max_bytes} bytes"), None
    stripe_signed = signature_scheme(row.system) == "stripe"
    verify = stripe_signature_verify if stripe_signed else signature_verify
    try:
        verify(
            header=headers.get(STRIPE_SIGNATURE_HEADER if stripe_signed else SIGNATURE_HEADER),
            body=raw_body,
            secrets=webhook_secrets(row.system),
            tolerance_seconds=settings.WEBHOOK_TOLERANCE_SECONDS,
            now=now,
        )
        row.signature_valid = True
    except SignatureRejected as exc:
        # Nothing of an unauthenticated body is parsed: the signature is checked first.
        return (exc.status, exc.reason), None
    depth = json_depth(raw_body)
    if depth > settings.WEBHOOK_MAX_JSON_DEPTH:
        return (400, f"JSON nested deeper than {settings.WEBHOOK_MAX_JSON_DEPTH} levels"), None
    try:
        return None, json.loads(raw_body.decode("utf-8"))
    except UnicodeDecodeError:
        return (400, "body is not valid UTF-8"), None
    except ValueError as exc:
        return (400, f"malformed JSON: {exc}"), None


def _stripe_envelope_read(
    row: InboundEvent, payload: dict[str, Any], rejection: Rejection | None
) -> Rejection | None:
    """Copy a Stripe Event's id, type and API version (and the Tandem reference in its
    object's metadata) onto ``row``; the mapping to a canonical event happens in processing."""
    row.event_id = _text(payload.get("id"), 255)
    row.event_type = _text(payload.get("type"), 100)
    row.schema_version = _text(payload.get("api_version"), 20)
    obj = (payload.get("data") or {}).get("object")
    metadata = (obj.get("metadata") if isinstance(obj, dict) else None) or {}
    reference = _text(metadata.get("tandem_order") or metadata.get("tandem_contract"), 64)
    row.correlation_id = reference.split(":", 1)[0] or row.correlation_id
    if rejection is None and not row.event_id:
        rejection = (400, "the Stripe event has no id")
    if rejection is None and not row.event_type:
        rejection = (400, "the Stripe event has no type")
    return rejection


def _envelope_read(
    row: InboundEvent, payload: dict[str, Any], rejection: Rejection | None
) -> Rejection | None:
    """Copy Tandem's envelope (event id, type, schema version, correlation id) onto ``row``."""
    row.event_id = _text(payload.get("event_id"), 255)
    row.event_type = _text(payload.get("event_type"), 100)
    version = payload.get("schema_version")
    row.schema_version = _storable(str(version)[:20]) if isinstance(version, int | str) else ""
    row.correlation_id = _text(payload.get("correlation_id"), 64) or row.correlation_id
    if rejection is None and not row.event_id:
        rejection = (400, "the payload has no event_id (a non-empty string)")
    if rejection is None and not row.event_type:
        rejection = (400, "the payload has no event_type (a non-empty string)")
    return rejection


def _schema_check(row: InboundEvent, payload: dict[str, Any]) -> Rejection | None:
    """Validate an authenticated Tandem envelope against its canonical schema at the door, so
    the sender learns at once (a 400 with the reason) instead of from a later rejection.

    Stripe events are not checked here: their canonical form is built in processing from
    what Tandem already stored, and Stripe cannot fix what it sends anyway.
    """
    try:
        event_validate(system=row.system, payload=payload)
    except EventRejected as exc:
        row.canonical_type = exc.canonical_type
        return (400, exc.reason)
    return None


def _accepted_or_duplicate(row: InboundEvent) -> Receipt:
    """Store an accepted delivery and send it to processing on commit; a repeat of a stored
    (system, event id) is counted on the first row and answered as a duplicate."""
    try:
        with transaction.atomic():
            row.save()
            pk = row.pk
            transaction.on_commit(lambda: inbound_event_enqueue(pk))
    except IntegrityError:
        return _duplicate_absorbed(row)
    return Receipt(
        http_status=202, body={"status": "accepted", "event_id": row.event_id}, event=row
    )


def _duplicate_absorbed(row: InboundEvent) -> Receipt:
    """A signed delivery repeating a stored (system, event id), whatever its content: counted
    on the first row and answered as a duplicate."""
    system = row.system
    claimed = InboundEvent.objects.filter(
        system=system, event_id=row.event_id, signature_valid=True
    ).exclude(status=InboundStatus.REJECTED)  # a rejected delivery gave its event id up
    claimed.update(
        duplicate_deliveries=F("duplicate_deliveries") + 1, last_delivered_at=timezone.now()
    )
    original = claimed.get()
    logger.info("webhook %s:%s absorbed as a duplicate", system, row.event_id)
    return Receipt(
        http_status=200, body={"status": "duplicate", "event_id": row.event_id}, event=original
    )


def inbound_event_process(*, inbound_event_id: int) -> InboundEvent | None:
    """Validate a received event against its schema and hand it to the workflows.

    Idempotent: an event that is no longer ``received`` is returned untouched. An invalid,
    unknown or unmappable event is marked ``rejected`` with the reason, never dropped.
    """
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=inbound_event_id).first()
        if event is None or event.status != InboundStatus.RECEIVED:
            return event
        with correlation(event.correlation_id):
            try:
                payload = json.loads(event.raw_body)
                if is_stripe_event(payload) and signature_scheme(event.system) == "stripe":
                    payload = stripe_event_canonical(payload)
                canonical_type = event_validate(system=event.system, payload=payload)
            except ValueError as exc:
                event.mark_rejected(reason=f"malformed JSON: {exc}")
            except EventRejected as exc:
                event.mark_rejected(reason=exc.reason, canonical_type=exc.canonical_type)
                logger.warning(
                    "inbound event %s:%s rejected: %s", event.system, event.event_id, exc.reason
                )
            else:
                try:
                    with transaction.atomic():  # a rejected mapping leaves nothing behind
                        absorbed = event_workflow_trigger(
                            event=event, canonical_type=canonical_type, payload=payload
                        )
                except EventRejected as exc:
                    event.mark_rejected(reason=exc.reason, canonical_type=canonical_type)
                    event.save(
                        update_fields=[
                            "status",
                            "canonical_type",
                            "rejection_reason",
                            "processed_at",
                        ]
                    )
                    logger.warning(
                        "inbound event %s:%s unmappable: %s",
                        event.system,
                        event.event_id,
                        exc.reason,
                    )
                    return event
                if absorbed:
                    event.mark_duplicate_absorbed(canonical_type=canonical_type, reason=absorbed)
                else:
                    event.mark_processed(canonical_type=canonical_type)
            event.save(
                update_fields=["status", "canonical_type", "rejection_reason", "processed_at"]
            )
    return event


def inbound_event_reject(*, inbound_event_id: int, reason: str) -> None:
    """Reject a still-received event with ``reason`` (e.g. what it refers to never came)."""
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=inbound_event_id).first()
        if event is None or event.status != InboundStatus.RECEIVED:
            return
        event.mark_rejected(reason=reason)
        event.save(update_fields=["status", "canonical_type", "rejection_reason", "processed_at"])


# An error of this kind may pass (the database restarting; a refusal that is not about the
# event's data, such as a lost race): the event is tried again, up to
# ``EVENT_MAX_ATTEMPTS`` times in all. Any other unexpected error is a bug or a payload the code
# cannot take: trying again would fail the same way, so the event is dead at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
EVENT_MAX_ATTEMPTS = 5
TRACEBACK_KEPT = 8000


def inbound_event_fail(*, inbound_event_id: int, error: BaseException) -> InboundEvent | None:
    """Record an unexpected error processing an event (in its own transaction, the processing
    one rolled back): count the attempt and keep the traceback; a non-transient error, or the
    ``EVENT_MAX_ATTEMPTS``-th, marks the event dead and puts an exception on integration
    support's queue. Returns the event (None when it is gone or no longer ``received``)."""
    trace = "".join(traceback.format_exception(error))[-TRACEBACK_KEPT:]
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=inbound_event_id).first()
        if event is None or event.status != InboundStatus.RECEIVED:
            return None
        event.attempts += 1
        event.last_error = trace
        fields = ["attempts", "last_error"]
        transient = isinstance(error, TRANSIENT_ERRORS) or (
            isinstance(error, Refused) and error.kind not in DATA_REFUSALS
        )
        if not transient or event.attempts >= EVENT_MAX_ATTEMPTS:
            summary = f"{type(error).__name__}: {str(error)[:300]}"
            why = "an unexpected error" if not transient else f"{event.attempts} attempts"
            event.mark_dead(reason=f"processing failed ({why}): {summary}")
            fields += ["status", "rejection_reason", "processed_at"]
            problem_raise(
                Problem(
                    category=Category.INTERNAL_ERROR,
                    severity=Severity.HIGH,
                    team=Team.INTEGRATION_SUPPORT,
                    system=event.system,
                    step="process_inbound_event",
                    error_class=type(error).__name__[:40],
                    message=f"inbound event {event.system}:{event.event_id or event.pk} is dead: "
                    f"{summary}",
                    context={"inbound_event": event.pk, "event_type": event.event_type},
                    correlation_id=event.correlation_id,
                ),
                actor=Actor.system("worker"),
                reason="inbound event dead",
            )
        event.save(update_fields=fields)
    logger.error(
        "inbound event %s failed (attempt %s, now %s): %s",
        inbound_event_id, event.attempts, event.status, type(error).__name__,
    )  # fmt: skip
    return event


def dead_letter_act(
    *, inbound_event_id: int, action: str, actor: Actor, reason: str
) -> InboundEvent:
    """Reprocess (back to ``received``, sent to a worker after commit) or discard a rejected or
    dead event, with a reason; the ``DeadLetterAction`` row and its history row record who and
    why. Refused: no reason, an unknown action, an event that is not a dead
    letter, or reprocessing a delivery whose signature was not verified (or whose body was
    not kept). ``PermissionDenied`` without ``orchestration.work_dead_letter``."""
    if not actor.has_perm("orchestration.work_dead_letter"):
        raise PermissionDenied(f"{actor.name} may not reprocess or discard dead letters")
    reason = reason.strip()
    if not reason:
        raise Refused("give a reason", kind=Refused.Kind.REASON_REQUIRED)
    if action not in DeadLetterAction.Kind.values:
        raise Refused(f"unknown action {action!r}", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=f"{action}: {reason}"):
        event = InboundEvent.objects.select_for_update().filter(pk=inbound_event_id).first()
        if event is None:
            raise Refused(
                f"inbound event {inbound_event_id} does not exist", kind=Refused.Kind.NOT_FOUND
            )
        if event.status not in DEAD_LETTER_STATUSES:
            raise Refused(
                f"inbound event {event.pk} is {event.status}, not rejected or dead",
                kind=Refused.Kind.STATE,
            )
        if action == DeadLetterAction.Kind.REPROCESS and not (
            event.signature_valid and event.raw_body
        ):
            raise Refused(
                f"inbound event {event.pk} was not authenticated (or its body was not kept): "
                "it cannot be reprocessed, only discarded",
                kind=Refused.Kind.STATE,
            )
        from_status = event.status
        if action == DeadLetterAction.Kind.REPROCESS:
            event.reprocess()
            pk = event.pk
            transaction.on_commit(lambda: inbound_event_enqueue(pk))
        else:
            event.discard()
        try:
            with transaction.atomic():
                event.save(update_fields=["status", "rejection_reason", "attempts", "processed_at"])
        except IntegrityError:
            # A rejected event gives up its event id: a later delivery of it was accepted.
            raise Refused(
                f"inbound event {event.pk}: a later delivery of {event.event_id} was accepted; "
                "discard this one",
                kind=Refused.Kind.STATE,
            ) from None
        DeadLetterAction.objects.create(
            event=event, action=action, from_status=from_status, reason=reason, actor=actor.user
        )
    return event
