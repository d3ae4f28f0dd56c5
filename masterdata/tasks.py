"""Master-data tasks. Thin: take primary keys, call a service."""

from __future__ import annotations

from celery import shared_task

from core.audit import Actor
from masterdata.services.duplicates import duplicates_detect


@shared_task(name="masterdata.detect_duplicates")
def detect_duplicates() -> dict[str, float]:
    """Find duplicate-account candidates (beat schedule, and on demand from the console)."""
    summary = duplicates_detect(actor=Actor.system("scheduler"))
    return {"accounts": summary.accounts, "found": summary.found, "seconds": summary.seconds}
