from celery import shared_task
from django.utils import timezone

from console.notifications import notifications_send


@shared_task(name="console.send_notifications")
def send_notifications() -> int:
    """Announce SLA breaches and approvals waiting (the beat runs it every few minutes)."""
    return notifications_send(now=timezone.now())
