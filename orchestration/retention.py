"""Retention: stored bodies of inbound deliveries and outbound calls are emptied once they
are older than ``TANDEM_RETENTION_DAYS``.

Bodies may carry personal data (names, e-mail addresses, addresses); the metadata beside them
(system, event id and type, status, rejection reason, path, status code, timings) is what
operations and the audit trail need, and it stays. An inbound event still ``received`` keeps
its body: it has not been processed yet. A dead letter whose body is gone can no longer be
reprocessed, only discarded.

The purge runs in batches of ``TANDEM_RETENTION_BATCH`` rows, one short transaction each, and
records itself (``RetentionPurge``, with a history row naming the system actor).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.audit import Actor, audit_context
from orchestration.models import InboundEvent, InboundStatus, OutboundCall, RetentionPurge


@dataclass(frozen=True)
class RetentionCounts:
    cutoff: dt.datetime
    inbound_bodies: int
    outbound_bodies: int
    batches: int


def _inbound_due(cutoff: dt.datetime) -> QuerySet[InboundEvent]:
    return InboundEvent.objects.filter(received_at__lt=cutoff, body_purged_at__isnull=True).exclude(
        status=InboundStatus.RECEIVED
    )


def _outbound_due(cutoff: dt.datetime) -> QuerySet[OutboundCall]:
    return OutboundCall.objects.filter(created_at__lt=cutoff, body_purged_at__isnull=True).filter(
        ~Q(request_body="") | ~Q(response_body="")
    )


def retention_due(*, now: dt.datetime | None = None) -> RetentionCounts:
    """What a purge would empty now (a dry run: reads only)."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.TANDEM_RETENTION_DAYS)
    return RetentionCounts(
        cutoff=cutoff,
        inbound_bodies=_inbound_due(cutoff).count(),
        outbound_bodies=_outbound_due(cutoff).count(),
        batches=0,
    )


def _purge_in_batches(due: QuerySet, *, fields: dict[str, object], batch: int) -> tuple[int, int]:
    """Empty ``fields`` on every row of ``due``, ``batch`` rows per transaction, lowest pk
    first. The filter is applied again in the UPDATE, so a row that changed in between (an
    event sent back to ``received`` for reprocessing) is left alone."""
    emptied = batches = 0
    after = 0
    while True:
        pks = list(due.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch])
        if not pks:
            return emptied, batches
        with transaction.atomic():
            # Operational logs without history tables: a plain UPDATE skips no audit trail.
            emptied += due.filter(pk__in=pks).update(**fields)
        batches += 1
        after = pks[-1]


def retention_purge(*, actor: Actor, now: dt.datetime | None = None) -> RetentionPurge:
    """Empty the bodies older than the retention period and record the purge."""
    started = timezone.now()
    cutoff = (now or started) - dt.timedelta(days=settings.TANDEM_RETENTION_DAYS)
    batch = settings.TANDEM_RETENTION_BATCH
    inbound, inbound_batches = _purge_in_batches(
        _inbound_due(cutoff), fields={"raw_body": "", "body_purged_at": started}, batch=batch
    )
    outbound, outbound_batches = _purge_in_batches(
        _outbound_due(cutoff),
        fields={"request_body": "", "response_body": "", "body_purged_at": started},
        batch=batch,
    )
    with audit_context(actor=actor, reason="retention purge"):
        return RetentionPurge.objects.create(
            cutoff=cutoff,
            retention_days=settings.TANDEM_RETENTION_DAYS,
            inbound_bodies=inbound,
            outbound_bodies=outbound,
            batches=inbound_batches + outbound_batches,
            triggered_by=actor.name,
            started_at=started,
            finished_at=timezone.now(),
        )
