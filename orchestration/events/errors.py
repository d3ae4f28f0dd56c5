"""Why an inbound delivery or event is refused, or has to wait.

``SignatureRejected`` refuses a delivery before it is stored as accepted (its ``status`` is the
HTTP answer); ``EventRejected`` marks a stored event ``rejected`` with a reason an operator can
act on; ``EventNotReady`` leaves it ``received`` to be tried again later.
"""

from __future__ import annotations


class SignatureRejected(Exception):
    """The delivery is not authentic (or cannot be checked); ``reason`` says why."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class EventRejected(Exception):
    """The event cannot be processed; ``reason`` says why in words an operator can act on."""

    def __init__(self, reason: str, *, canonical_type: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.canonical_type = canonical_type


class EventNotReady(Exception):
    """The event refers to something not here yet (it arrived early): try again later."""
