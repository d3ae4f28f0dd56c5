"""The quote state machine: converted once into an order, or rejected."""

from __future__ import annotations

import pytest

from core.audit import Actor
from core.errors import TransitionRefused
from core.transitions import transition_apply
from q2c import services
from q2c.models import Order, Quote
from tests.q2c.helpers import (
    case_ids,
    fsm_allowed_cases,
    fsm_refused_cases,
    fsm_sources,
    last_history,
    quote,
    walk_to,
)


def _convert(record: Quote, *, target: str | None, actor: Actor, reason: str) -> Quote:
    services.quote_convert_to_order(quote=record, actor=actor, reason=reason)
    return record


def _reject(record: Quote, *, target: str | None, actor: Actor, reason: str) -> Quote:
    # CPQ rejections arrive with the inbound events; until then the bare transition.
    return transition_apply(record, "reject", actor=actor, reason=reason, reason_text=reason)


STEPS = {"convert": _convert, "reject": _reject}
ALLOWED = fsm_allowed_cases(Quote, computed={})
REFUSED = fsm_refused_cases(Quote)


def test_every_transition_has_a_step():
    # given / when
    names = sorted({name for name, _, _ in ALLOWED} | {name for name, _ in REFUSED})
    # then
    assert names == sorted(STEPS)


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "source", "target"), ALLOWED, ids=case_ids(ALLOWED))
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    record = walk_to(quote(), source, steps=STEPS)
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
    record = walk_to(quote(), state, steps=STEPS)
    history_before = record.history.count()
    orders_before = Order.objects.count()
    # when
    with pytest.raises(TransitionRefused) as refused:
        STEPS[transition](record, target=None, actor=Actor.system("worker"), reason="by test")
    # then
    assert str(refused.value) == (
        f"{record.enterprise_id} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(fsm_sources(Quote, transition))})"
    )
    record.refresh_from_db()
    assert record.state == state
    assert record.history.count() == history_before
    assert Order.objects.count() == orders_before
