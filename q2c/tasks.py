"""Scheduled housekeeping for the canonical records. Tasks are thin: they call services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from q2c import services


@shared_task(name="q2c.contracts_expire_ended")
def contracts_expire_ended() -> int:
    """Expire every active contract whose term ended before today."""
    return services.contracts_expire_ended(today=timezone.localdate())
