"""Where a processed canonical event hands over to the workflows.

``event_workflow_trigger`` runs inside the transaction that marks the event processed, so a
workflow it starts (rows, plus tasks enqueued on commit) exists exactly when the event is
marked processed. Until the workflows land it only logs.
"""

from __future__ import annotations

import logging
from typing import Any

from orchestration.models import InboundEvent

logger = logging.getLogger(__name__)


def event_workflow_trigger(*, event: InboundEvent, canonical_type: str, payload: Any) -> str:
    """Start or advance the workflow ``event`` concerns.

    Returns an empty string when the event was taken up, or the reason it was absorbed as
    a duplicate of one already handled (the same business event under another event id).
    """
    logger.info(
        "inbound event %s:%s (%s) has no workflow to trigger yet",
        event.system,
        event.event_id,
        canonical_type,
        extra={"system": event.system, "event_type": canonical_type},
    )
    return ""
