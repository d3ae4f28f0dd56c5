"""A service's Refused answered by the API in one place: the status its kind says, the
message an operator reads and the kind; anything else stays DRF's or a 500."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from core.api import exception_handler
from core.errors import Refused


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (Refused.Kind.TRANSITION, 400),
        (Refused.Kind.REASON_REQUIRED, 400),
        (Refused.Kind.STATE, 400),
        (Refused.Kind.INVALID, 400),
        (Refused.Kind.DUPLICATE, 400),
        (Refused.Kind.NOT_FOUND, 404),
        (Refused.Kind.CONFLICT, 409),
    ],
)
def test_a_refusal_is_answered_with_its_kinds_status_the_message_and_the_kind(kind, status):
    # when
    response = exception_handler(Refused("EXC-7 is ignored", kind=kind), {})
    # then
    assert response is not None
    assert (response.status_code, response.data) == (
        status,
        {"detail": "EXC-7 is ignored", "kind": kind.value},
    )


def test_a_permission_refusal_is_still_djangos_403():
    # when
    response = exception_handler(PermissionDenied("another person must approve it"), {})
    # then
    assert response is not None
    assert (response.status_code, response.data) == (
        403,
        {"detail": "another person must approve it"},
    )


def test_any_other_error_is_left_to_become_a_500():
    # when / then: DRF does not handle it, so Django answers 500 with a traceback
    assert exception_handler(ValueError("a bug"), {}) is None
