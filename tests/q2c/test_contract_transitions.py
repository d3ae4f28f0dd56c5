"""The contract state machine, case by case from its FSM metadata, run through the services."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied

from core.audit import Actor
from core.errors import TransitionRefused
from core.transitions import transition_apply
from q2c import services
from q2c.models import Contract, ContractState
from tests import factories
from tests.q2c.helpers import (
    case_ids,
    fsm_allowed_cases,
    fsm_refused_cases,
    fsm_sources,
    fsm_states,
    last_history,
    walk_to,
)


def _activate(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Contract:
    return services.contract_activate(contract=contract, actor=actor, reason=reason)


def _renew(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Contract:
    services.contract_renew(
        contract=contract,
        new_end_date=contract.end_date.replace(year=contract.end_date.year + 1),
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )
    return contract


def _start_renewal_term(
    contract: Contract, *, target: str | None, actor: Actor, reason: str
) -> Contract:
    return services.contract_start_renewal_term(contract=contract, actor=actor, reason=reason)


def _expire(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Contract:
    # Expiry runs in bulk for every ended contract (contracts_expire_ended, tested in
    # test_contract_versions.py); one contract's expiry is the bare transition.
    return transition_apply(contract, "expire", actor=actor, reason=reason)


def _cancel(contract: Contract, *, target: str | None, actor: Actor, reason: str) -> Contract:
    return services.contract_cancel(
        contract=contract, effective_date=dt.date(2026, 6, 30), actor=actor, reason=reason
    )


STEPS = {
    "activate": _activate,
    "renew": _renew,
    "start_renewal_term": _start_renewal_term,
    "expire": _expire,
    "cancel": _cancel,
}
ALLOWED = fsm_allowed_cases(Contract, computed={})
REFUSED = fsm_refused_cases(Contract)


def _contract_in(state: str) -> Contract:
    return walk_to(factories.contract(), state, steps=STEPS)


def test_every_transition_has_a_step():
    # given / when
    names = sorted({name for name, _, _ in ALLOWED} | {name for name, _ in REFUSED})
    # then
    assert names == sorted(STEPS)


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_states(Contract))
def test_every_state_is_reached_through_the_services(state):
    # given
    contract = factories.contract()
    # when
    contract = walk_to(contract, state, steps=STEPS)
    # then
    contract.refresh_from_db()
    assert contract.state == state


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "source", "target"), ALLOWED, ids=case_ids(ALLOWED))
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    contract = _contract_in(source)
    history_before = contract.history.count()
    # when
    STEPS[transition](contract, target=target, actor=factories.actor(), reason="checked by test")
    # then
    contract.refresh_from_db()
    assert contract.state == target
    assert contract.history.count() == history_before + 1
    assert last_history(contract) == (target, "worker", "checked by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "state"), REFUSED, ids=case_ids(REFUSED))
def test_transition_is_refused_from_every_other_state(transition, state):
    # given
    contract = _contract_in(state)
    history_before = contract.history.count()
    versions_before = list(contract.versions.values_list("number", "kind", "state"))
    allowed = fsm_sources(Contract, transition)
    # when
    with pytest.raises(TransitionRefused) as refused:
        STEPS[transition](contract, target=None, actor=factories.actor(), reason="tried by test")
    # then
    assert type(refused.value) is TransitionRefused
    assert str(refused.value) == (
        f"{contract.enterprise_id} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(allowed)})"
    )
    contract.refresh_from_db()
    assert contract.state == state
    assert contract.history.count() == history_before
    assert list(contract.versions.values_list("number", "kind", "state")) == versions_before


@pytest.mark.django_db
def test_person_without_cancel_permission_is_denied(make_user):
    # given
    contract = _contract_in(ContractState.ACTIVE)
    history_before = contract.history.count()
    person = Actor.person(make_user("sam", role="sales_ops"))
    # when
    with pytest.raises(PermissionDenied) as denied:
        services.contract_cancel(
            contract=contract,
            effective_date=dt.date(2026, 6, 30),
            actor=person,
            reason="customer left",
        )
    # then
    assert str(denied.value) == f"sam may not 'cancel' {contract.enterprise_id}"
    contract.refresh_from_db()
    assert (contract.state, contract.versions.count()) == (ContractState.ACTIVE, 1)
    assert contract.history.count() == history_before


@pytest.mark.django_db
def test_finance_ops_may_cancel(make_user):
    # given
    contract = _contract_in(ContractState.ACTIVE)
    fran = Actor.person(make_user("fran", role="finance_ops"))
    # when
    services.contract_cancel(
        contract=contract, effective_date=dt.date(2026, 6, 30), actor=fran, reason="customer left"
    )
    # then
    contract.refresh_from_db()
    assert (contract.state, contract.cancellation_reason) == (
        ContractState.CANCELLED,
        "customer left",
    )
    assert last_history(contract) == ("cancelled", "fran", "customer left")
