"""Errors the services raise, each with a message an operator can act on."""

from __future__ import annotations


class TransitionRefused(Exception):
    """An illegal state transition, refused with the reason."""

    def __init__(self, *, record: object, transition: str, state: str, allowed: list[str]):
        self.record = record
        self.transition = transition
        self.state = state
        self.allowed = allowed
        where = ", ".join(allowed) if allowed else "no state"
        super().__init__(f"{record} cannot '{transition}' while '{state}' (allowed from: {where})")


class ConditionFailed(TransitionRefused):
    """The transition is allowed from this state, but its preconditions are not met."""

    def __init__(self, *, record: object, transition: str, state: str, unmet: list[str]):
        Exception.__init__(self, f"{record} cannot '{transition}': {', '.join(unmet)}")
        self.record = record
        self.transition = transition
        self.state = state
        self.allowed = []
        self.unmet = unmet


class ReasonRequired(ValueError):
    pass


def reason_require(reason: str) -> None:
    """Every audited change carries a reason; refuse a missing or blank one."""
    if not reason or not reason.strip():
        raise ReasonRequired("a reason is required for this change")
