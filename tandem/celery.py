"""The Celery app: durable, fair delivery and a named system actor for every task.

Late acks with reject-on-worker-lost mean a task whose worker dies is redelivered instead of
silently acked; prefetch 1 keeps one slow task from hoarding others. Each system kind has its
own queue so a slow ERP never blocks billing. Tasks must stay idempotent: the broker may
deliver twice, and the database row, not the message, is the truth.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")


class AuditedTask(Task):  # type: ignore[misc]
    """Every task runs as the ``worker`` system actor unless it names another."""

    system_actor = "worker"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from core.audit import Actor, audit_context

        with audit_context(actor=Actor.system(self.system_actor)):
            return super().__call__(*args, **kwargs)


# filesystem:// (the demo's broker) uses our atomic writer; see tandem.broker.
TRANSPORT_ALIASES["filesystem"] = "tandem.broker:Transport"

app = Celery("tandem", task_cls=AuditedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
