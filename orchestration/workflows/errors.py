"""What a step handler raises. Connectors' errors are classed into these two."""

from __future__ import annotations

from typing import Any


class StepRetryable(Exception):
    """A transient failure (timeout, 5xx, 429): the step is retried with backoff."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        waiting: bool = False,
        **context: Any,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        # waiting for a system to settle, not a failure: no attempt is used up
        self.waiting = waiting
        self.context = context


class StepFailed(Exception):
    """A permanent failure: the step stops and becomes an exception for a person."""

    def __init__(
        self,
        message: str,
        *,
        category: str,
        severity: str = "high",
        compensation: str = "",
        **context: Any,
    ):
        super().__init__(message)
        self.category = category
        self.severity = severity
        self.compensation = compensation
        self.context = context
