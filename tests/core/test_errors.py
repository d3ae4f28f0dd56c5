"""Refused: one refusal with the message an operator reads and its kind."""

from __future__ import annotations

import pickle

import pytest
from django.core.exceptions import ValidationError

from core.errors import (
    ConditionFailed,
    ReasonRequired,
    Refused,
    TransitionRefused,
    invalid_refused,
    reason_require,
)


def test_a_refused_transition_is_a_refusal_of_its_kind_naming_the_states_allowed():
    # when
    refused = TransitionRefused(
        record="ORD-000001", transition="validate", state="cancelled", allowed=["received"]
    )
    # then
    assert isinstance(refused, Refused)
    assert (refused.kind, refused.message, str(refused)) == (
        Refused.Kind.TRANSITION,
        "ORD-000001 cannot 'validate' while 'cancelled' (allowed from: received)",
        "ORD-000001 cannot 'validate' while 'cancelled' (allowed from: received)",
    )


def test_an_unmet_condition_is_a_refused_transition_naming_what_is_missing():
    # when
    refused = ConditionFailed(
        record="INV-000001", transition="post", state="draft", unmet=["has lines"]
    )
    # then
    assert isinstance(refused, TransitionRefused)
    assert (refused.kind, refused.message, refused.allowed, refused.unmet) == (
        Refused.Kind.TRANSITION,
        "INV-000001 cannot 'post': has lines",
        [],
        ["has lines"],
    )


@pytest.mark.parametrize("reason", ["", " ", "\t\n"])
def test_a_blank_reason_is_refused_with_the_message_given(reason):
    # when
    with pytest.raises(ReasonRequired) as refused:
        reason_require(reason, "a reason is required to retry")
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.REASON_REQUIRED,
        "a reason is required to retry",
    )


def test_a_reason_is_accepted():
    # when / then: no refusal
    reason_require("tax id fixed in CPQ")


def test_a_validation_error_becomes_an_invalid_input_refusal_with_every_message():
    # when
    with pytest.raises(Refused) as refused, invalid_refused():
        raise ValidationError(
            {
                "currency": ["eur is not an ISO 4217 currency code"],
                "country": ["Ensure this value has at most 2 characters."],
            }
        )
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        "eur is not an ISO 4217 currency code; Ensure this value has at most 2 characters.",
    )
    assert isinstance(refused.value.__cause__, ValidationError)


def test_other_errors_pass_through_the_validation_error_conversion():
    # when / then: a bug is not a refusal
    with pytest.raises(KeyError), invalid_refused():
        raise KeyError("currency")


@pytest.mark.parametrize(
    "refusal",
    [
        Refused("EXC-7 is ignored", kind=Refused.Kind.STATE),
        TransitionRefused(record="ORD-1", transition="hold", state="active", allowed=["received"]),
        ConditionFailed(record="INV-1", transition="post", state="draft", unmet=["has lines"]),
        ReasonRequired("a reason is required to retry"),
    ],
)
def test_a_refusal_survives_a_trip_between_processes(refusal):
    # when
    copy = pickle.loads(pickle.dumps(refusal))  # noqa: S301 (our own bytes)
    # then
    assert (type(copy), copy.kind, copy.message, str(copy), copy.__dict__) == (
        type(refusal), refusal.kind, refusal.message, str(refusal), refusal.__dict__,
    )  # fmt: skip
