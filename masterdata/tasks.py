"""Master-data tasks. Thin: take primary keys, call a service."""

from __future__ import annotations

import random

from celery import Task, shared_task

from core.audit import Actor
from masterdata import services


@shared_task(name="masterdata.detect_duplicates")
def detect_duplicates() -> dict[str, float]:
    """Find duplicate-account candidates (beat schedule, and on demand from the console)."""
    summary = services.duplicates_detect(actor=Actor.system("scheduler"))
    return {"accounts": summary.accounts, "found": summary.found, "seconds": summary.seconds}


@shared_task(
    name="masterdata.merge_push", bind=True, max_retries=services.MERGE_PUSH_MAX_ATTEMPTS - 1
)
def merge_push(self: Task, merge_id: int) -> str:
    """Push one merge to the CRM; retry what the CRM could not take now, with backoff."""
    final = self.request.retries >= (self.max_retries or 0)
    try:
        return services.merge_push(merge_id=merge_id, final_attempt=final)
    except services.MergePushRetry as exc:
        delay = exc.retry_after or min(2 ** (self.request.retries + 1), 60)
        raise self.retry(exc=exc, countdown=delay + random.uniform(0, 1)) from exc
