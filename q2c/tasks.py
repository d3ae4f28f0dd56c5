"""Scheduled housekeeping for the canonical records. Tasks are thin: they call services."""

from __future__ import annotations

import socket

from celery import shared_task
from django.utils import timezone

from q2c import services
from q2c.models import WorkerHeartbeat


@shared_task(name="q2c.tasks.worker_heartbeat")
def worker_heartbeat() -> None:
    """Record that a worker is alive (operational, not audited)."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )


@shared_task(name="q2c.tasks.contracts_expire_ended")
def contracts_expire_ended() -> int:
    """Expire every active contract whose term ended before today."""
    return services.contracts_expire_ended(today=timezone.localdate())
