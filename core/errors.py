"""What a service refuses, with the message an operator reads.

A service refuses operator or worker input, or an action the records' state does not allow,
by raising ``Refused`` (or one of its subclasses): nothing was changed, and the message says
why in words the person can act on. Views and the API catch ``Refused`` and only that, so
any other exception (a bug, an impossible state) stays a 500 with a traceback instead of
becoming a flash message. ``PermissionDenied`` is not a refusal: Django answers it with a 403.

The ``kind`` says what sort of refusal it is, for the API's status code and for callers that
treat kinds differently (a lost race is retried, invalid data is not).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError


class Refused(Exception):
    """A service refused; ``message`` is what the operator reads, nothing was changed."""

    class Kind(enum.StrEnum):
        TRANSITION = "transition_refused"  # the state machine does not allow it from this state
        REASON_REQUIRED = "reason_required"  # an audited change needs a reason
        STATE = "not_permitted_in_state"  # a rule of the record's current state forbids it
        INVALID = "invalid_input"  # the input does not fit (unknown code, malformed payload)
        NOT_FOUND = "not_found"  # what the input names does not exist
        CONFLICT = "conflict"  # another change won a race: read the record again, then retry
        DUPLICATE = "duplicate"  # the same thing exists already or is pending

    def __init__(self, message: str, *, kind: Refused.Kind) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__ (the subclasses take other arguments), so a
        # refusal crosses a process boundary (Celery's prefork pool) whole.
        return (_refused_rebuild, (type(self), self.args, self.__dict__))


def _refused_rebuild(cls: type[Refused], args: tuple[Any, ...], state: dict[str, Any]) -> Refused:
    refused = cls.__new__(cls)
    Exception.__init__(refused, *args)
    refused.__dict__.update(state)
    return refused


# The kinds that refuse the data a worker brings (an event's fields, a customer from CPQ), as
# opposed to a refused transition, a missing reason or a lost race. Workers turn these into
# something a person reads (a rejected event, a failed step) and let the others propagate,
# so the work is tried again.
DATA_REFUSALS = frozenset({Refused.Kind.INVALID, Refused.Kind.STATE, Refused.Kind.DUPLICATE})


class TransitionRefused(Refused):
    """An illegal state transition, refused with the states it is allowed from."""

    def __init__(self, *, record: object, transition: str, state: str, allowed: list[str]):
        where = ", ".join(allowed) if allowed else "no state"
        super().__init__(
            f"{record} cannot '{transition}' while '{state}' (allowed from: {where})",
            kind=Refused.Kind.TRANSITION,
        )
        self.record = record
        self.transition = transition
        self.state = state
        self.allowed = allowed


class ConditionFailed(TransitionRefused):
    """The transition is allowed from this state, but its preconditions are not met."""

    def __init__(self, *, record: object, transition: str, state: str, unmet: list[str]):
        Refused.__init__(
            self,
            f"{record} cannot '{transition}': {', '.join(unmet)}",
            kind=Refused.Kind.TRANSITION,
        )
        self.record = record
        self.transition = transition
        self.state = state
        self.allowed = []
        self.unmet = unmet


class ReasonRequired(Refused):
    """An audited change was asked for without a reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind=Refused.Kind.REASON_REQUIRED)


def reason_require(reason: str, message: str = "a reason is required for this change") -> None:
    """Every audited change carries a reason; refuse a missing or blank one (``ReasonRequired``)."""
    if not reason or not reason.strip():
        raise ReasonRequired(message)


@contextlib.contextmanager
def invalid_refused() -> Iterator[None]:
    """Turn Django's ``ValidationError`` (a model's ``full_clean``, a field validator) raised
    in the block into ``Refused`` (``INVALID``), its messages joined by '; '."""
    try:
        yield
    except ValidationError as exc:
        raise Refused("; ".join(exc.messages), kind=Refused.Kind.INVALID) from exc
