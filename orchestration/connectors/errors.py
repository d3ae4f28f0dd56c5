"""What a connector call raises: retry the retryable, hand the permanent to a person."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class ConnectorConfigurationError(ImproperlyConfigured):
    """A connector is configured in a way that must never reach the network."""


class CallInsideTransaction(RuntimeError):
    """An outbound call was attempted inside ``transaction.atomic`` (it could hold locks)."""


class ConnectorError(Exception):
    """A failed call to a system. ``kind`` says why; ``outbound_call_id`` names its row."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        system: str,
        kind: str,
        status: int | None = None,
        outbound_call_id: int | None = None,
        retry_after: int | None = None,
        waiting: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.system = system
        self.kind = kind
        self.status = status
        self.outbound_call_id = outbound_call_id
        self.retry_after = retry_after
        # Not a failure of the system but a wait for it (an earlier call's outcome is still
        # unknown): the retry neither uses up an attempt nor counts against the circuit.
        self.waiting = waiting

    def __str__(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.system}{status} {self.kind}: {self.message}"


class RetryableError(ConnectorError):
    """Timeouts, connection errors, 5xx, 429 (with ``retry_after`` seconds when sent)."""

    retryable = True


class PermanentError(ConnectorError):
    """Validation, authentication, not found: retrying the same request cannot help."""
