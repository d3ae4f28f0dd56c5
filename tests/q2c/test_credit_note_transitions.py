"""The credit note state machine: a draft is issued or voided, nothing after."""

from __future__ import annotations

import pytest

from core.audit import Actor
from core.errors import TransitionRefused
from core.transitions import transition_apply
from q2c.models import CreditNote
from tests.q2c.helpers import (
    case_ids,
    credit_note,
    fsm_allowed_cases,
    fsm_refused_cases,
    fsm_sources,
    fsm_transitions,
    last_history,
    walk_to,
)


def _bare(name: str):  # type: ignore[no-untyped-def]
    # No credit-note service exists yet: the bare transition is what one will call.
    def step(record: CreditNote, *, target: str | None, actor: Actor, reason: str) -> CreditNote:
        return transition_apply(record, name, actor=actor, reason=reason)

    return step


STEPS = {name: _bare(name) for name in fsm_transitions(CreditNote)}
ALLOWED = fsm_allowed_cases(CreditNote, computed={})
REFUSED = fsm_refused_cases(CreditNote)


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "source", "target"), ALLOWED, ids=case_ids(ALLOWED))
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    record = walk_to(credit_note(), source, steps=STEPS)
    history_before = record.history.count()
    # when
    STEPS[transition](record, target=target, actor=Actor.system("worker"), reason="by test")
    # then
    record.refresh_from_db()
    assert record.state == target
    assert record.history.count() == history_before + 1
    assert last_history(record) == (target, "worker", "by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "state"), REFUSED, ids=case_ids(REFUSED))
def test_transition_is_refused_from_every_other_state(transition, state):
    # given
    record = walk_to(credit_note(), state, steps=STEPS)
    history_before = record.history.count()
    # when
    with pytest.raises(TransitionRefused) as refused:
        STEPS[transition](record, target=None, actor=Actor.system("worker"), reason="by test")
    # then
    assert str(refused.value) == (
        f"{record.enterprise_id} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(fsm_sources(CreditNote, transition))})"
    )
    record.refresh_from_db()
    assert record.state == state
    assert record.history.count() == history_before
