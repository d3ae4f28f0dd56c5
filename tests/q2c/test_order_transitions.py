"""The order state machine, case by case from its FSM metadata, run through the services."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction

from core.audit import Actor, audit_context
from core.errors import ConditionFailed, TransitionRefused
from core.identifiers import PREFIXES, identifier_allocate
from q2c import services
from q2c.models import Order, OrderState
from tests import factories
from tests.q2c.helpers import (
    ORDER_COMPUTED,
    ORDER_STEPS,
    case_ids,
    fsm_allowed_cases,
    fsm_field,
    fsm_refused_cases,
    fsm_sources,
    fsm_states,
    fsm_transitions,
    last_history,
    order_in,
    walk_to,
)

# release returns where the order was held from: tested with hold below.
ALLOWED = fsm_allowed_cases(Order, computed=ORDER_COMPUTED)
REFUSED = fsm_refused_cases(Order)
PERMISSIONED = sorted(
    (name, method._django_fsm.transitions[fsm_sources(Order, name)[0]].permission)
    for name, method in fsm_field(Order).transitions[Order].items()
    if method._django_fsm.transitions[fsm_sources(Order, name)[0]].permission
)

# Where each permissioned transition leads from its first source (release: back to received).
AFTER_PERMISSIONED = {"cancel": "cancelled", "hold": "on_hold", "release": "received"}


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_states(Order))
def test_every_state_is_reached_through_the_services(state):
    # given
    order = factories.order()
    # when
    order = walk_to(order, state, steps=ORDER_STEPS, computed=ORDER_COMPUTED)
    # then
    order.refresh_from_db()
    assert order.state == state


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("transition", "source", "target"),
    ALLOWED,
    ids=case_ids(ALLOWED),
)
def test_transition_is_allowed_from_each_of_its_sources(transition, source, target):
    # given
    order = order_in(source)
    history_before = order.history.count()
    # when
    ORDER_STEPS[transition](order, target=target, actor=factories.actor(), reason="checked by test")
    # then
    order.refresh_from_db()
    assert order.state == target
    assert order.history.count() == history_before + 1
    assert last_history(order) == (target, "worker", "checked by test")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "state"), REFUSED, ids=case_ids(REFUSED))
def test_transition_is_refused_from_every_other_state(transition, state):
    # given
    order = order_in(state)
    history_before = order.history.count()
    allowed = fsm_sources(Order, transition)
    # when
    with pytest.raises(TransitionRefused) as refused:
        ORDER_STEPS[transition](order, target=None, actor=factories.actor(), reason="tried by test")
    # then
    assert type(refused.value) is TransitionRefused
    assert str(refused.value) == (
        f"{order.enterprise_id} cannot '{transition}' while '{state}' "
        f"(allowed from: {', '.join(allowed)})"
    )
    assert (refused.value.transition, refused.value.state, refused.value.allowed) == (
        transition,
        state,
        allowed,
    )
    order.refresh_from_db()
    assert order.state == state
    assert order.history.count() == history_before


@pytest.mark.django_db
def test_refusal_message_names_the_order_the_transition_and_the_state():
    # given
    order = factories.order()
    # when
    with pytest.raises(TransitionRefused) as refused:
        services.order_fulfil(order=order, actor=factories.actor(), reason="ship it")
    # then
    assert str(refused.value) == (
        "ORD-000001 cannot 'fulfil' while 'received' (allowed from: active)"
    )


@pytest.mark.django_db
def test_order_without_lines_cannot_validate():
    # given
    account = factories.account()
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        order = Order.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["order"]),
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
        )
    history_before = order.history.count()
    # when
    with pytest.raises(ConditionFailed) as failed:
        services.order_validate(order=order, actor=factories.actor(), reason="looks complete")
    # then
    assert str(failed.value) == f"{order.enterprise_id} cannot 'validate': needs at least one line"
    assert failed.value.unmet == ["needs at least one line"]
    order.refresh_from_db()
    assert order.state == OrderState.RECEIVED
    assert order.history.count() == history_before


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_sources(Order, "hold"))
def test_hold_remembers_the_state_it_came_from(state):
    # given
    order = order_in(state)
    # when
    services.order_hold(order=order, actor=factories.actor(), reason="customer asked to pause")
    # then
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (
        OrderState.ON_HOLD,
        state,
        "customer asked to pause",
    )
    assert last_history(order, "state", "held_from_state") == (
        "on_hold",
        state,
        "worker",
        "customer asked to pause",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("state", fsm_sources(Order, "hold"))
def test_release_restores_the_state_it_was_held_from(state):
    # given
    order = order_in(state)
    services.order_hold(order=order, actor=factories.actor(), reason="customer asked to pause")
    # when
    services.order_release(order=order, actor=factories.actor(), reason="customer confirmed")
    # then
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (state, "", "")
    assert last_history(order) == (state, "worker", "customer confirmed")


def test_release_can_return_to_every_state_hold_comes_from():
    # given
    release = fsm_transitions(Order)["release"]
    # when
    targets = sorted(str(s) for s in release[OrderState.ON_HOLD].allowed_states)
    # then
    assert targets == fsm_sources(Order, "hold")


@pytest.mark.django_db
def test_cancelling_a_held_order_forgets_where_it_was_held_from():
    # given
    order = order_in(OrderState.ACCEPTED)
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    # when
    services.order_cancel(order=order, actor=factories.actor(), reason="credit refused")
    # then
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.cancellation_reason) == (
        OrderState.CANCELLED,
        "",
        "credit refused",
    )


def test_hold_release_and_cancel_need_a_permission():
    # given / when
    permissioned = PERMISSIONED
    # then
    assert permissioned == [
        ("cancel", "q2c.cancel_order"),
        ("hold", "q2c.hold_order"),
        ("release", "q2c.hold_order"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "permission"), PERMISSIONED)
def test_person_without_the_permission_is_denied(transition, permission, make_user):
    # given
    state = fsm_sources(Order, transition)[0]
    order = order_in(state)
    history_before = order.history.count()
    person = Actor.person(make_user("pat"))
    # when
    with pytest.raises(PermissionDenied) as denied:
        ORDER_STEPS[transition](order, target=None, actor=person, reason="tried without the right")
    # then
    assert str(denied.value) == f"pat may not '{transition}' {order.enterprise_id}"
    order.refresh_from_db()
    assert order.state == state
    assert order.history.count() == history_before


@pytest.mark.django_db
def test_person_without_hold_permission_cannot_hold_an_order(make_user):
    # given
    order = factories.order()
    history_before = order.history.count()
    person = Actor.person(make_user("pat", role="finance_ops"))
    # when
    with pytest.raises(PermissionDenied) as denied:
        services.order_hold(order=order, actor=person, reason="pause it")
    # then
    assert str(denied.value) == f"pat may not 'hold' {order.enterprise_id}"
    order.refresh_from_db()
    assert (order.state, order.held_from_state) == (OrderState.RECEIVED, "")
    assert order.history.count() == history_before


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "permission"), PERMISSIONED)
def test_sales_ops_may_run_the_permissioned_transitions(transition, permission, make_user):
    # given
    order = order_in(fsm_sources(Order, transition)[0])
    sam = Actor.person(make_user("sam", role="sales_ops"))
    # when
    ORDER_STEPS[transition](order, target=None, actor=sam, reason="as the customer asked")
    # then
    order.refresh_from_db()
    assert last_history(order) == (AFTER_PERMISSIONED[transition], "sam", "as the customer asked")


@pytest.mark.django_db
@pytest.mark.parametrize(("transition", "permission"), PERMISSIONED)
@pytest.mark.parametrize("system_name", ["worker", "connector:erp"])
def test_system_actors_may_run_the_permissioned_transitions(transition, permission, system_name):
    # given
    order = order_in(fsm_sources(Order, transition)[0])
    system = Actor.system(system_name)
    # when
    ORDER_STEPS[transition](order, target=None, actor=system, reason="the ERP said so")
    # then
    order.refresh_from_db()
    assert last_history(order) == (AFTER_PERMISSIONED[transition], system_name, "the ERP said so")
