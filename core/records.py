"""Building blocks shared by every canonical record."""

from __future__ import annotations

import threading
from typing import Any

from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin

from core.errors import invalid_refused

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
    """``full_clean`` that leaves protected state fields alone (they refuse assignment).

    A record that does not validate is refused (``Refused``, kind ``INVALID``), its
    messages joined by '; '."""
    from django_fsm import FSMFieldMixin

    skip = set(exclude or [])
    skip.update(f.name for f in record._meta.concrete_fields if isinstance(f, FSMFieldMixin))
    with invalid_refused():
        record.full_clean(exclude=sorted(skip))


_refresh_lock = threading.RLock()


class ConcurrentTransitions(ConcurrentTransitionMixin):
    """django-fsm-2's optimistic locking, safe in a threaded worker.

    The library's ``refresh_from_db`` lifts the ``protected`` flag on the state field
    itself (shared by every instance in the process) and puts it back afterwards; two
    threads refreshing at once can put it back under each other and fail with "Direct
    state modification is not allowed". Refreshes are serialised here.
    """

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        with _refresh_lock:
            super().refresh_from_db(*args, **kwargs)
