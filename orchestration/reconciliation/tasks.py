"""Reconciliation tasks: thin, each calls the service."""

from __future__ import annotations

import logging

from celery import shared_task

from core.audit import Actor
from core.errors import Refused
from orchestration.reconciliation.models import ReconciledSystem
from orchestration.reconciliation.services import reconciliation_run, since_last_run

logger = logging.getLogger(__name__)


@shared_task(name="orchestration.reconcile")
def reconcile(system: str = "all", full: bool = False) -> list[int]:
    """Reconcile ``system`` (or every reconciled system): in full, or incrementally from
    the start of its last successful run (in full when there was none). Returns the runs."""
    systems = ReconciledSystem.values if system == "all" else [system]
    actor = Actor.system("scheduler")
    runs = []
    for name in systems:
        since = None if full else since_last_run(name)
        try:
            runs.append(reconciliation_run(system=name, actor=actor, since=since).pk)
        except Refused as exc:  # e.g. a connector that cannot list: the others still run
            logger.warning("reconciliation of %s not run: %s", name, exc)
    return runs
