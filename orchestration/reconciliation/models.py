"""Reconciliation runs and the drift items they find."""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import FSMField, transition

from core.audit import AuditedHistory
from core.money import AmountField
from core.problems import Team
from core.records import ConcurrentTransitions


class ReconciledSystem(models.TextChoices):
    BILLING = "billing", "Subscription billing"
    ERP = "erp", "ERP"


class RunState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ReconciliationRun(models.Model):
    """One comparison of Tandem with one system (``system``), in full or incrementally
    (``since``: only what changed on either side from then on)."""

    system = models.CharField(max_length=20, choices=ReconciledSystem.choices)
    since = models.DateTimeField(null=True, blank=True, help_text="empty: a full run")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=12, choices=RunState.choices, default=RunState.RUNNING)
    triggered_by = models.CharField(max_length=150)
    tandem_rows = models.PositiveIntegerField(default=0)
    remote_rows = models.PositiveIntegerField(default=0)
    found = models.PositiveIntegerField(default=0, help_text="drift items seen in this run")
    opened = models.PositiveIntegerField(default=0)
    closed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["system", "state", "-started_at"])]
        permissions = [("run_reconciliation", "Can start a reconciliation run")]

    def __str__(self) -> str:
        return f"REC-{self.pk} {self.system}"

    @property
    def incremental(self) -> bool:
        return self.since is not None


class DriftType(models.TextChoices):
    MISSING_IN_ERP = "missing_in_erp", "Missing in ERP"
    MISSING_IN_BILLING = "missing_in_billing", "Missing in billing"
    MISSING_IN_TANDEM = "missing_in_tandem", "Missing in Tandem"
    AMOUNT = "amount", "Amount differs"
    TAX = "tax", "Tax differs"
    CURRENCY = "currency", "Currency differs"
    STATUS = "status", "Status differs"
    VERSION = "version", "Contract version differs"
    DUPLICATE_DOWNSTREAM = "duplicate_downstream", "Duplicate downstream"


class DriftState(models.TextChoices):
    OPEN = "open", "Open"
    CLEARED = "cleared", "Cleared (gone on a later run)"
    RESOLVED = "resolved", "Resolved"


class DriftResolution(models.TextChoices):
    FIXED_DOWNSTREAM = "fixed_downstream", "Fixed in the other system"
    FIXED_IN_TANDEM = "fixed_in_tandem", "Fixed in Tandem"
    TIMING = "timing", "Timing difference, nothing to fix"
    ACCEPTED = "accepted", "Accepted difference"


class DriftItem(ConcurrentTransitions, models.Model):
    """One difference between Tandem and a system, as long as it lasts.

    ``key`` names it (system, record type, both references and the type), so a later run
    that finds the same difference updates this item instead of opening another. It closes
    by itself (``cleared``) when a run no longer finds it, or is resolved by finance."""

    key = models.CharField(max_length=255)
    system = models.CharField(max_length=20, choices=ReconciledSystem.choices)
    object_type = models.CharField(max_length=30)
    drift_type = models.CharField(max_length=30, choices=DriftType.choices)
    tandem_ref = models.CharField(max_length=40, blank=True, db_index=True)
    remote_ref = models.CharField(max_length=100, blank=True)
    legal_entity = models.CharField(max_length=20, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    tandem_amount = AmountField(null=True, blank=True)
    remote_amount = AmountField(null=True, blank=True)
    difference = AmountField(help_text="what the system has minus what Tandem has, absolute")
    tandem_record = models.JSONField(default=dict, blank=True)
    remote_record = models.JSONField(default=dict, blank=True)
    detail = models.CharField(max_length=255)
    owner_team = models.CharField(max_length=30, choices=Team.choices, default=Team.FINANCE_OPS)
    state = FSMField(default=DriftState.OPEN, choices=DriftState.choices, protected=True)
    first_run = models.ForeignKey(
        ReconciliationRun, on_delete=models.PROTECT, related_name="drift_opened"
    )
    last_run = models.ForeignKey(
        ReconciliationRun, on_delete=models.PROTECT, related_name="drift_seen"
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    seen_count = models.PositiveIntegerField(default=1)
    exception_ref = models.CharField(max_length=40, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    resolution_code = models.CharField(max_length=30, choices=DriftResolution.choices, blank=True)
    resolution_note = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-first_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(state="open"), name="driftitem_one_open_per_key"
            ),
            models.CheckConstraint(condition=Q(difference__gte=0), name="driftitem_diff_non_neg"),
        ]
        indexes = [
            models.Index(fields=["state", "system", "drift_type"]),
            models.Index(fields=["state", "first_seen_at"]),
        ]
        permissions = [("resolve_drift", "Can resolve a drift item")]

    def __str__(self) -> str:
        return f"DRIFT-{self.pk} {self.drift_type} {self.tandem_ref or self.remote_ref}"

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        end = self.closed_at or now or timezone.now()
        return end - self.first_seen_at

    @transition(field=state, source=DriftState.OPEN, target=DriftState.CLEARED)
    def clear(self, *, at: dt.datetime) -> None:
        self.closed_at = at

    @transition(
        field=state,
        source=DriftState.OPEN,
        target=DriftState.RESOLVED,
        permission="orchestration.resolve_drift",
    )
    def resolve(self, *, code: str, note: str, at: dt.datetime) -> None:
        self.resolution_code = code
        self.resolution_note = note
        self.closed_at = at
