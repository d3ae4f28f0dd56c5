"""Building blocks shared by every canonical record."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

SYSTEM_CHOICES = [
    ("crm", "CRM"),
    ("cpq", "CPQ"),
    ("billing", "Subscription billing"),
    ("erp", "ERP"),
    ("tax", "Tax"),
    ("payments", "Payments"),
]
SYSTEMS = [code for code, _ in SYSTEM_CHOICES]


class LineKind(models.TextChoices):
    RECURRING = "recurring", "Recurring"
    ONE_TIME = "one_time", "One-time"
    USAGE = "usage", "Usage"


class BillingPeriod(models.TextChoices):
    NONE = "", "None"
    MONTH = "month", "Monthly"
    QUARTER = "quarter", "Quarterly"
    YEAR = "year", "Yearly"


class CanonicalRecord(models.Model):
    """A record with an enterprise identifier that every system's copy is correlated by."""

    enterprise_id = models.CharField(max_length=20, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.enterprise_id


class StatefulRecord(CanonicalRecord):
    """A canonical record with a state machine: tracks when it entered its state."""

    state_changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        abstract = True

    def _entered_state(self) -> None:
        self.state_changed_at = timezone.now()


def record_full_clean(record: models.Model, *, exclude: list[str] | None = None) -> None:
    """``full_clean`` that leaves protected state fields alone (they refuse assignment)."""
    from django_fsm import FSMFieldMixin

    skip = set(exclude or [])
    skip.update(f.name for f in record._meta.concrete_fields if isinstance(f, FSMFieldMixin))
    record.full_clean(exclude=sorted(skip))
