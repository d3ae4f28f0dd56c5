"""The project shell's own task: the worker heartbeat the supervisor and the dashboard read."""

from __future__ import annotations

import socket

from celery import shared_task
from django.utils import timezone

from tandem.models import WorkerHeartbeat


@shared_task(name="tandem.worker_heartbeat")
def worker_heartbeat() -> None:
    """Record that a worker is alive (operational, not audited)."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )
