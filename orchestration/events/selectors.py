"""Reads of inbound events."""

from __future__ import annotations

from django.db.models import QuerySet

from orchestration.models import DEAD_LETTER_STATUSES, InboundEvent, InboundStatus


def inbound_events_rejected(*, system: str | None = None) -> QuerySet[InboundEvent]:
    """Every rejected delivery, newest first: bad signatures, bad JSON, invalid events."""
    events = InboundEvent.objects.filter(status=InboundStatus.REJECTED)
    if system is not None:
        events = events.filter(system=system)
    return events.order_by("-received_at", "-pk")


def dead_letters(*, status: str = "", system: str = "") -> QuerySet[InboundEvent]:
    """Rejected and dead events, newest first, without their bodies (``status`` and
    ``system`` narrow the list)."""
    statuses = [status] if status in DEAD_LETTER_STATUSES else list(DEAD_LETTER_STATUSES)
    qs = InboundEvent.objects.filter(status__in=statuses)
    if system:
        qs = qs.filter(system=system)
    return qs.defer("raw_body", "last_error").order_by("-received_at", "-pk")
