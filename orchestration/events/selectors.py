"""Reads of inbound events."""

from __future__ import annotations

from django.db.models import QuerySet

from orchestration.models import InboundEvent, InboundStatus


def inbound_events_rejected(*, system: str | None = None) -> QuerySet[InboundEvent]:
    """Every rejected delivery, newest first: bad signatures, bad JSON, invalid events."""
    events = InboundEvent.objects.filter(status=InboundStatus.REJECTED)
    if system is not None:
        events = events.filter(system=system)
    return events.order_by("-received_at", "-pk")
