"""The contract version state machine: pending, active, superseded; never backwards."""

from __future__ import annotations

import datetime as dt

import pytest

from core.audit import Actor
from core.errors import TransitionRefused
from core.transitions import transition_apply
from q2c import services
from q2c.models import ContractVersion
from tests import factories
from tests.q2c.helpers import (
    case_ids,
    fsm_allowed_cases,
    fsm_refused_cases,
    fsm_sources,
    fsm_transitions,
    last_history,
    walk_to,
)


# Versions move through the contract services: activating the contract activates version 1,
# an amendment supersedes it.
def _activated(
    version: ContractVersion, *, target: str | None, actor: Actor, reason: str
) -> ContractVersion:
    services.contract_activate(contract=version.contract, actor=actor, reason=reason)
    version.refresh_from_db()
    return version


def _superseded(
    version: ContractVersion, *, target: str | None, actor: Actor, reason: str
) -> ContractVersion:
    services.contract_amend(
        contract=version.contract,
        effective_date=dt.date(2026, 7, 1),
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )
    version.refresh_from_db()
    return version


WALK = {"activate": _activated, "supersede": _superseded}
ALLOWED = fsm_allowed_cases(ContractVersion, computed={})
REFUSED = fsm_refused_cases(ContractVersion)


def _version_one_in(state: str) -> ContractVersion:
    contract = factories.contract()
    return walk_to(contract.versions.get(number=1), state, steps=WALK)


def test_every_transition_can_be_walked():
    # given / when
    names = sorted(fsm_transitions(ContractVersion))
    # then
    assert names == sorted(WALK)


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "source", "target"), ALLOWED, ids=case_ids(ALLOWED))
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    version = _version_one_in(source)
    history_before = version.history.count()
    # when
    transition_apply(version, transition, actor=Actor.system("worker"), reason="by test")
    # then
    version.refresh_from_db()
    assert version.state == target
    assert version.history.count() == history_before + 1
    assert last_history(version) == (target, "worker", "by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "state"), REFUSED, ids=case_ids(REFUSED))
def test_transition_is_refused_from_every_other_state(transition, state):
    # given
    version = _version_one_in(state)
    history_before = version.history.count()
    # when
    with pytest.raises(TransitionRefused) as refused:
        transition_apply(version, transition, actor=Actor.system("worker"), reason="by test")
    # then
    assert str(refused.value) == (
        f"{version} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(fsm_sources(ContractVersion, transition))})"
    )
    version.refresh_from_db()
    assert version.state == state
    assert version.history.count() == history_before
