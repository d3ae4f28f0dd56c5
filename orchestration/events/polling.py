"""Polling with a persisted cursor, for systems that send no webhooks (e.g. Tryton).

``poll_cursor_run`` reads one stream's changes after its cursor through the system's
connector (outside any transaction), then in one transaction stores each change as a raw
``InboundEvent`` (deduplicated by (system, event id), exactly like a webhook delivery) and
moves the cursor. Processing goes through the same path as webhooks
(``orchestration.tasks.process_inbound_event``, the handlers in ``events/handlers.py``),
enqueued on commit. So a crash before the commit re-reads the same changes, a crash after
it has them stored, and a change read twice is absorbed by its event id: nothing is
skipped or delivered twice. A failed read leaves the cursor where it was and is recorded on
the cursor row (``last_error``), where the admin shows it.

A cursor on a modification time misses a change whose transaction began before the
cursor's position but committed after the cursor moved past it. A connector that can say
so (``Rechecking.poll_recheck``) is asked, after each run, for the changes of a look-back
window behind the cursor: those not stored yet are stored (``PollResult.recovered``, and
a warning in the log), the rest are absorbed; the cursor does not move.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from orchestration.connectors.errors import ConnectorConfigurationError, ConnectorError
from orchestration.connectors.interfaces import Pollable
from orchestration.events.services import inbound_event_enqueue
from orchestration.models import InboundEvent, PollCursor

logger = logging.getLogger(__name__)

MAX_PAGES_PER_RUN = 10


@dataclass(frozen=True)
class PollResult:
    system: str
    stream: str
    stored: int = 0
    duplicates: int = 0
    cursor: str = ""
    error: str = ""
    recovered: int = 0  # found behind the cursor by the look-back re-read


def pollable_systems() -> list[str]:
    """The systems whose configured connector class can be polled."""
    found = []
    for system, path in settings.TANDEM_CONNECTOR_IMPLEMENTATIONS.items():
        try:
            implementation = import_string(path)
        except ImportError:
            continue  # connector_for reports it when the system is used
        if callable(getattr(implementation, "poll", None)):
            found.append(system)
    return found


def _failure_record(*, cursor_id: int, message: str) -> None:
    now = timezone.now()
    PollCursor.objects.filter(pk=cursor_id).update(
        last_run_at=now,
        last_error=message[:2000],
        consecutive_failures=F("consecutive_failures") + 1,
    )


def _enqueue_all(inbound_event_ids: list[int]) -> None:
    for pk in inbound_event_ids:
        inbound_event_enqueue(pk)


def _events_insert(*, row: PollCursor, events: list[dict[str, Any]]) -> tuple[list[int], int]:
    """Store the events not stored yet (inside the caller's transaction): (new pks, repeats)."""
    new_ids: list[int] = []
    duplicates = 0
    known = set(
        InboundEvent.objects.filter(
            system=row.system, event_id__in=[str(payload["event_id"]) for payload in events]
        ).values_list("event_id", flat=True)
    )
    for payload in events:
        if str(payload["event_id"]) in known:
            duplicates += 1  # read before (an overlapping cursor, the look-back): absorbed
            continue
        event = InboundEvent(
            system=row.system,
            event_id=str(payload["event_id"]),
            event_type=str(payload["event_type"]),
            schema_version=str(payload.get("schema_version", ""))[:20],
            # Read by Tandem from the system over its authenticated API: as trustworthy as
            # a webhook whose signature checked out.
            signature_valid=True,
            raw_body=json.dumps(payload, sort_keys=True),
            headers={"X-Tandem-Source": f"poll:{row.stream}"},
            correlation_id=str(payload.get("correlation_id") or "")[:64],
        )
        try:
            with transaction.atomic():
                event.save()
        except IntegrityError:
            duplicates += 1  # stored meanwhile by a concurrent poll or a twice-read page
            continue
        known.add(event.event_id)
        new_ids.append(event.pk)
    return new_ids, duplicates


def _events_store(
    *, cursor: PollCursor, read_from: str, events: list[dict[str, Any]], next_cursor: str
) -> tuple[list[int], int] | None:
    """Store ``events`` and move the cursor, atomically. None if another poll moved it."""
    with transaction.atomic():
        row = PollCursor.objects.select_for_update().get(pk=cursor.pk)
        if row.cursor != read_from:
            return None  # a concurrent poll stored this page already
        new_ids, duplicates = _events_insert(row=row, events=events)
        now = timezone.now()
        row.cursor = next_cursor
        row.last_run_at = row.last_success_at = now
        row.last_error = ""
        row.consecutive_failures = 0
        row.events_stored = row.events_stored + len(new_ids)
        row.save()
        if new_ids:
            transaction.on_commit(lambda: _enqueue_all(new_ids))
    return new_ids, duplicates


def poll_cursor_run(*, system: str, stream: str, connector: Pollable | None = None) -> PollResult:
    """Read ``stream`` of ``system`` from its cursor until no page moves it (at most
    ``MAX_PAGES_PER_RUN`` pages). Never raises for a failed read: the result and the cursor
    row carry the error; the cursor stays where it was."""
    from orchestration.connectors.registry import connector_for

    cursor, _ = PollCursor.objects.get_or_create(system=system, stream=stream)
    stored = duplicates = 0
    try:
        source: Pollable = connector if connector is not None else connector_for(system)
        for _page in range(MAX_PAGES_PER_RUN):
            read_from = cursor.cursor
            batch = source.poll(stream=stream, cursor=read_from)
            saved = _events_store(
                cursor=cursor, read_from=read_from, events=batch.events, next_cursor=batch.cursor
            )
            if saved is None:
                break
            stored += len(saved[0])
            duplicates += saved[1]
            cursor.cursor = batch.cursor
            if batch.cursor == read_from:
                break
        recovered = _behind_cursor_store(source=source, cursor=cursor)
    except (ConnectorError, ConnectorConfigurationError, KeyError, ValueError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        _failure_record(cursor_id=cursor.pk, message=message)
        logger.warning(
            "polling %s/%s failed: %s", system, stream, message, extra={"system": system}
        )
        return PollResult(system, stream, stored, duplicates, cursor.cursor, message)
    if stored:
        logger.info("polled %s/%s: %s new events", system, stream, stored, extra={"system": system})
    if recovered:
        logger.warning(
            "polled %s/%s: %s events committed behind the cursor, found by the look-back",
            system,
            stream,
            recovered,
            extra={"system": system},
        )
    return PollResult(system, stream, stored, duplicates, cursor.cursor, recovered=recovered)


def _behind_cursor_store(*, source: Pollable, cursor: PollCursor) -> int:
    """Store what the look-back window behind the cursor holds that was never stored."""
    recheck = getattr(source, "poll_recheck", None)  # Rechecking's, when it has one
    if recheck is None or not cursor.cursor:
        return 0
    events: list[dict[str, Any]] = recheck(stream=cursor.stream, cursor=cursor.cursor)
    if not events:
        return 0
    with transaction.atomic():
        row = PollCursor.objects.get(pk=cursor.pk)
        new_ids, _ = _events_insert(row=row, events=events)
        if new_ids:
            PollCursor.objects.filter(pk=row.pk).update(
                events_stored=F("events_stored") + len(new_ids)
            )
            transaction.on_commit(lambda: _enqueue_all(new_ids))
    return len(new_ids)


def systems_poll() -> list[PollResult]:
    """Poll every stream of every pollable system once."""
    from orchestration.connectors.registry import connector_for

    results = []
    for system in pollable_systems():
        try:
            connector = connector_for(system)
        except ConnectorConfigurationError as exc:
            logger.warning("cannot poll %s: %s", system, exc, extra={"system": system})
            continue
        for stream in connector.poll_streams():
            results.append(poll_cursor_run(system=system, stream=stream, connector=connector))
    return results
