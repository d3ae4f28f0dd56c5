"""Orchestration records: inbound events, workflow runs, outbound calls (built on the
canonical records in q2c and masterdata). Packages: events/, workflows/, connectors/.

``OutboundCall`` and ``InboundEvent`` are operational logs, not audited records: each row is
written once by the transport or the webhook endpoint and only its processing status moves
afterwards, so they carry no history table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import FSMField, transition

from core.audit import AuditedHistory
from core.records import SYSTEM_CHOICES, ConcurrentTransitions


class OutboundOutcome(models.TextChoices):
    OK = "ok", "OK"
    RETRYABLE = "retryable", "Retryable failure"
    PERMANENT = "permanent", "Permanent failure"


class OutboundCall(models.Model):
    """One HTTP call to a system, as the transport made it. Bodies are redacted and capped."""

    system = models.CharField(max_length=20, choices=SYSTEM_CHOICES)
    operation = models.CharField(
        max_length=100, help_text="The connector operation, e.g. order_create"
    )
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500, help_text="Relative to the system's base URL, no query")
    idempotency_key = models.CharField(max_length=255, blank=True, db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=OutboundOutcome.choices)
    error_class = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    retry_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(help_text="Wall time of the call, rounded up")
    attempt = models.PositiveSmallIntegerField(default=1)
    correlation_id = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="The enterprise id of the deal"
    )
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)
    body_purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention emptied the bodies (metadata is kept)"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["system", "outcome", "created_at"])]

    def __str__(self) -> str:
        status = self.status_code if self.status_code is not None else self.error_class
        return f"{self.system} {self.method} {self.path} → {status}"


class InboundStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    REJECTED = "rejected", "Rejected"
    DUPLICATE_ABSORBED = "duplicate_absorbed", "Duplicate absorbed"
    DEAD = "dead", "Dead (processing failed)"
    DISCARDED = "discarded", "Discarded"


# What the dead-letter view lists and acts on: every event that will not be processed as sent.
DEAD_LETTER_STATUSES = (InboundStatus.REJECTED, InboundStatus.DEAD)


class InboundEvent(ConcurrentTransitions, models.Model):
    """One webhook delivery, stored raw before anything else happens to it.

    Only authenticated deliveries with an event id claim their (system, event id): a forged
    or garbled delivery is kept for inspection but can never block the genuine event. A
    rejected delivery gives its event id up, so the sender can send the event again, fixed.
    """

    system = models.CharField(max_length=20, choices=SYSTEM_CHOICES)
    event_id = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=100, blank=True, help_text="As the system sent it")
    canonical_type = models.CharField(max_length=100, blank=True)
    schema_version = models.CharField(max_length=20, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    signature_valid = models.BooleanField()
    status = FSMField(
        max_length=20, choices=InboundStatus.choices, default=InboundStatus.RECEIVED, protected=True
    )
    rejection_reason = models.TextField(blank=True)
    raw_body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True, db_index=True)
    client_address = models.CharField(
        max_length=45, blank=True, help_text="The address the delivery came from"
    )
    duplicate_deliveries = models.PositiveIntegerField(
        default=0,
        help_text="Repeats counted on this row: of an authenticated event, its duplicates; of "
        "an unauthenticated delivery, the same refusal from the same address within the hour",
    )
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Processing attempts that ended in an unexpected error"
    )
    last_error = models.TextField(blank=True, help_text="The traceback of the last such error")
    body_purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention emptied the body (metadata is kept)"
    )

    class Meta:
        ordering = ["-received_at", "-pk"]
        permissions = [("work_dead_letter", "Can reprocess or discard a dead letter")]
        constraints = [
            models.UniqueConstraint(
                fields=["system", "event_id"],
                condition=Q(signature_valid=True)
                & ~Q(event_id="")
                & ~Q(status=InboundStatus.REJECTED),
                name="inboundevent_unique_system_event",
            )
        ]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.system}:{self.event_id or '?'} {self.event_type or '?'} ({self.status})"

    @transition(field=status, source=InboundStatus.RECEIVED, target=InboundStatus.PROCESSED)
    def mark_processed(self, *, canonical_type: str) -> None:
        self.canonical_type = canonical_type
        self.processed_at = timezone.now()

    @transition(field=status, source=InboundStatus.RECEIVED, target=InboundStatus.REJECTED)
    def mark_rejected(self, *, reason: str, canonical_type: str = "") -> None:
        self.rejection_reason = reason
        self.canonical_type = canonical_type
        self.processed_at = timezone.now()

    @transition(
        field=status, source=InboundStatus.RECEIVED, target=InboundStatus.DUPLICATE_ABSORBED
    )
    def mark_duplicate_absorbed(self, *, canonical_type: str, reason: str) -> None:
        self.canonical_type = canonical_type
        self.rejection_reason = reason
        self.processed_at = timezone.now()

    @transition(field=status, source=InboundStatus.RECEIVED, target=InboundStatus.DEAD)
    def mark_dead(self, *, reason: str) -> None:
        self.rejection_reason = reason
        self.processed_at = timezone.now()

    @transition(field=status, source=list(DEAD_LETTER_STATUSES), target=InboundStatus.RECEIVED)
    def reprocess(self) -> None:
        self.rejection_reason = ""
        self.attempts = 0
        self.processed_at = None

    @transition(field=status, source=list(DEAD_LETTER_STATUSES), target=InboundStatus.DISCARDED)
    def discard(self) -> None:
        self.processed_at = timezone.now()


class DeadLetterAction(models.Model):
    """A person reprocessed or discarded a dead letter (a rejected or dead inbound event).

    Inbound events are operational logs without history; this row, written once with its own
    history row (actor and reason), is the audit trail of what was done to one."""

    class Kind(models.TextChoices):
        REPROCESS = "reprocess", "Reprocess"
        DISCARD = "discard", "Discard"

    event = models.ForeignKey(InboundEvent, on_delete=models.PROTECT, related_name="actions")
    action = models.CharField(max_length=10, choices=Kind.choices)
    from_status = models.CharField(max_length=20, choices=InboundStatus.choices)
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.action} event {self.event_id}"


class RetentionPurge(models.Model):
    """One run of the retention purge: how many stored bodies it emptied, older than what.

    Written by a system actor with a history row, so the audit trail shows that personal
    data went away, when, and by which rule; the rows it emptied keep their metadata."""

    cutoff = models.DateTimeField(help_text="Bodies of rows older than this were emptied")
    retention_days = models.PositiveIntegerField()
    inbound_bodies = models.PositiveIntegerField(default=0)
    outbound_bodies = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    triggered_by = models.CharField(max_length=150)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    history = AuditedHistory()

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"retention purge {self.started_at:%Y-%m-%d %H:%M} (before {self.cutoff:%Y-%m-%d})"


class PollCursor(models.Model):
    """How far Tandem has read one stream of changes of a system without webhooks.

    The cursor is opaque to Tandem (the connector formats it, e.g. a write date and id); it
    moves only in the transaction that stores the events read up to it, so a crash between
    reading and storing re-reads the same changes. A failed poll leaves the cursor alone and
    is recorded here (``last_error``, ``consecutive_failures``), visible in the admin.
    """

    system = models.CharField(max_length=20, choices=SYSTEM_CHOICES)
    stream = models.CharField(max_length=50, help_text="Which changes, e.g. sales or invoices")
    cursor = models.CharField(max_length=255, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    events_stored = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["system", "stream"]
        constraints = [
            models.UniqueConstraint(fields=["system", "stream"], name="pollcursor_unique_stream")
        ]

    def __str__(self) -> str:
        return f"{self.system}/{self.stream} @ {self.cursor or 'start'}"


# The workflow engine's tables live beside their engine; registered here for Django.
# Reconciliation runs and their drift items (orchestration/reconciliation/).
from orchestration.reconciliation.models import DriftItem, ReconciliationRun  # noqa: E402, F401
from orchestration.workflows.models import (  # noqa: E402, F401
    CircuitBreaker,
    StepEffect,
    StepRun,
    WorkflowRun,
    WorkflowSignal,
)
