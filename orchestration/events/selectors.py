"""Reads of inbound events."""

from __future__ import annotations

import datetime as dt

from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from core.records import SYSTEMS
from orchestration.models import DEAD_LETTER_STATUSES, InboundEvent, InboundStatus


def inbound_events_rejected(*, system: str | None = None) -> QuerySet[InboundEvent]:
    """Every rejected delivery, newest first: bad signatures, bad JSON, invalid events."""
    events = InboundEvent.objects.filter(status=InboundStatus.REJECTED)
    if system is not None:
        events = events.filter(system=system)
    return events.order_by("-received_at", "-pk")


def throttled_key(system: str, day: dt.date) -> str:
    """The cache key counting ``system``'s deliveries refused by the rate limit on ``day``."""
    return f"webhook-throttled:{system}:{day.isoformat()}"


def dead_letters(*, status: str = "", system: str = "") -> QuerySet[InboundEvent]:
    """Rejected and dead events, newest first, without their bodies (``status`` and
    ``system`` narrow the list)."""
    statuses = [status] if status in DEAD_LETTER_STATUSES else list(DEAD_LETTER_STATUSES)
    qs = InboundEvent.objects.filter(status__in=statuses)
    if system:
        qs = qs.filter(system=system)
    return qs.defer("raw_body", "last_error").order_by("-received_at", "-pk")


def webhook_throttled_today() -> dict[str, int]:
    """Deliveries refused by the webhook rate limit today (UTC), per system that had any."""
    today = timezone.now().date()
    keys = {throttled_key(system, today): system for system in SYSTEMS}
    return {keys[key]: count for key, count in sorted(cache.get_many(list(keys)).items())}
