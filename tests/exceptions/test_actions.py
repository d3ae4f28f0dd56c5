"""Retry, resolve and ignore from the console: who may, what changes, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from core.audit import Actor
from core.roles import ROLE_NAMES
from exceptions import services
from exceptions.models import ExceptionState, OperationalException
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import RunState, StepState
from q2c.models import OrderState
from tests.exceptions.helpers import (
    ADMIN,
    ANONYMOUS,
    NO_ROLE,
    drain,
    planned,
    raise_exception,
    snapshot,
    user_for,
)

WHO = [*ROLE_NAMES, ADMIN, NO_ROLE, ANONYMOUS]

# The written policy: who may run each action (everyone else signed in gets a 403).
MAY_RETRY = {"sales_ops", "finance_ops", "data_steward", "integration_support", ADMIN}
MAY_RESOLVE = {"finance_ops", "data_steward", "integration_support", ADMIN}

ACTIONS: dict[str, tuple[set[str], dict[str, str]]] = {
    "exception-retry": (MAY_RETRY, {"reason": "tax id corrected in CPQ"}),
    "exception-resolve": (MAY_RESOLVE, {"code": "fixed_at_source", "reason": "fixed in CPQ"}),
    "exception-ignore": (MAY_RESOLVE, {"reason": "test order, not billed"}),
}


# How an exception raised by ``raise_exception()`` names itself after its id.
STR = "master_data: customer rejected: tax id invalid"


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def post(client: Any, who: str, url_name: str, exc: OperationalException, data: dict) -> Any:
    user = user_for(who)
    if user.is_authenticated:
        client.force_login(user)
    return client.post(reverse(url_name, args=[exc.pk]), data)


@pytest.mark.django_db
@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("url_name", list(ACTIONS))
def test_each_action_is_allowed_exactly_to_the_roles_the_policy_names(client, who, url_name):
    # given
    allowed, data = ACTIONS[url_name]
    exc = raise_exception()
    before = snapshot(exc)
    url = reverse(url_name, args=[exc.pk])
    # when
    response = post(client, who, url_name, exc, data)
    # then
    if who == ANONYMOUS:
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={url}")
        assert snapshot(exc) == before
    elif who in allowed:
        assert (response.status_code, response["Location"]) == (302, f"/exceptions/{exc.pk}/")
        assert snapshot(exc) != before
    else:
        assert response.status_code == 403
        assert snapshot(exc) == before


@pytest.mark.django_db
def test_retry_queues_the_failed_step_again_and_marks_the_exception_retrying(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("sales_ops"))
    # when
    response = client.post(
        reverse("exception-retry", args=[exc.pk]), {"reason": "tax id corrected"}, follow=True
    )
    # then
    assert messages_of(response) == [
        ("success", f"EXC-{exc.pk}: step create_customer queued to run again")
    ]
    assert snapshot(exc) == (
        ExceptionState.RETRYING, "", "", 2, StepState.QUEUED, RunState.RUNNING,
        OrderState.RECEIVED,  # released from the hold while the step runs again
    )  # fmt: skip
    last = exc.history.order_by("-history_id").first()
    assert (last.state, last.history_user.username, last.history_change_reason) == (
        "retrying",
        "user-sales_ops",
        "tax id corrected",
    )


@pytest.mark.django_db
def test_a_retry_that_succeeds_resolves_the_exception_and_releases_the_order(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("integration_support"))
    client.post(reverse("exception-retry", args=[exc.pk]), {"reason": "erp is back"})
    # when
    drain(exc.workflow_run)
    # then
    assert snapshot(exc) == (
        ExceptionState.RESOLVED, "retry_succeeded", "the step succeeded on retry", 3,
        StepState.SUCCEEDED, RunState.COMPLETED, OrderState.RECEIVED,
    )  # fmt: skip


@pytest.mark.django_db
def test_a_retry_that_fails_again_reopens_the_exception_with_the_new_message(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("integration_support"))
    client.post(reverse("exception-retry", args=[exc.pk]), {"reason": "try again"})
    planned[(exc.correlation_id, "create_customer")] = [
        StepFailed("customer rejected: address invalid", category="master_data")
    ]
    # when
    drain(exc.workflow_run)
    # then
    exc.refresh_from_db()
    assert (exc.state, exc.message, OperationalException.objects.count()) == (
        ExceptionState.OPEN,
        "customer rejected: address invalid",
        1,
    )


@pytest.mark.django_db
def test_resolve_closes_the_exception_with_the_code_and_reason_as_the_signed_in_person(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("finance_ops"))
    # when
    response = client.post(
        reverse("exception-resolve", args=[exc.pk]),
        {"code": "fixed_at_source", "reason": "tax id fixed in CPQ"},
        follow=True,
    )
    # then
    assert messages_of(response) == [
        ("success", f"EXC-{exc.pk} resolved: Fixed in the source system")
    ]
    assert snapshot(exc) == (
        ExceptionState.RESOLVED, "fixed_at_source", "tax id fixed in CPQ", 2, StepState.FAILED,
        RunState.PAUSED, OrderState.ON_HOLD,
    )  # fmt: skip
    last = exc.history.order_by("-history_id").first()
    assert (last.state, last.history_user.username, last.history_change_reason) == (
        "resolved",
        "user-finance_ops",
        "tax id fixed in CPQ",
    )


@pytest.mark.django_db
def test_ignore_closes_the_exception_with_the_reason(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("data_steward"))
    # when
    response = client.post(
        reverse("exception-ignore", args=[exc.pk]), {"reason": "test order"}, follow=True
    )
    # then
    assert messages_of(response) == [("success", f"EXC-{exc.pk} ignored")]
    exc.refresh_from_db()
    assert (exc.state, exc.resolution_code, exc.resolution_note) == (
        ExceptionState.IGNORED,
        "ignored",
        "test order",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url_name, data, error",
    [
        ("exception-retry", {"reason": ""}, "a reason is required to retry"),
        ("exception-retry", {"reason": "   "}, "a reason is required to retry"),
        ("exception-resolve", {"code": "fixed_at_source", "reason": ""},
         "a reason is required to 'resolve' EXC-{pk} " + STR),
        ("exception-resolve", {"code": "", "reason": "fixed"},
         "choose a resolution code to resolve EXC-{pk}"),
        ("exception-resolve", {"code": "retry_succeeded", "reason": "fixed"},
         "choose a resolution code to resolve EXC-{pk}"),
        ("exception-ignore", {"reason": " "},
         "a reason is required to 'ignore' EXC-{pk} " + STR),
    ],
)  # fmt: skip
def test_an_action_without_a_reason_or_code_shows_an_error_and_changes_nothing(
    client, url_name, data, error
):
    # given
    exc = raise_exception()
    before = snapshot(exc)
    client.force_login(user_for("integration_support"))
    # when
    response = client.post(reverse(url_name, args=[exc.pk]), data, follow=True)
    # then
    assert response.redirect_chain == [(f"/exceptions/{exc.pk}/", 302)]
    assert messages_of(response) == [("error", error.format(pk=exc.pk))]
    assert snapshot(exc) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url_name, data, error",
    [
        ("exception-retry", {"reason": "again"},
         "EXC-{pk} is ignored; only an open exception is retried"),
        ("exception-resolve", {"code": "duplicate", "reason": "again"},
         "EXC-{pk} master_data: customer rejected: tax id invalid cannot 'resolve' while 'ignored' "
         "(allowed from: open, retrying)"),
        ("exception-ignore", {"reason": "again"},
         "EXC-{pk} master_data: customer rejected: tax id invalid cannot 'ignore' while 'ignored' "
         "(allowed from: open, retrying)"),
    ],
)  # fmt: skip
def test_an_action_on_a_closed_exception_is_refused_and_changes_nothing(
    client, url_name, data, error
):
    # given
    exc = raise_exception()
    client.force_login(user_for("integration_support"))
    client.post(reverse("exception-ignore", args=[exc.pk]), {"reason": "not ours"}, follow=True)
    before = snapshot(exc)
    # when
    response = client.post(reverse(url_name, args=[exc.pk]), data, follow=True)
    # then
    assert messages_of(response) == [("error", error.format(pk=exc.pk))]
    assert snapshot(exc) == before


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", list(ACTIONS))
def test_an_action_by_get_is_not_allowed(client, url_name):
    # given
    exc = raise_exception()
    before = snapshot(exc)
    client.force_login(user_for(ADMIN))
    # when
    response = client.get(reverse(url_name, args=[exc.pk]), ACTIONS[url_name][1])
    # then
    assert response.status_code == 405
    assert snapshot(exc) == before


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", list(ACTIONS))
def test_an_action_on_an_unknown_exception_is_404(client, url_name):
    # given
    client.force_login(user_for(ADMIN))
    # when
    response = client.post(reverse(url_name, args=[999999]), ACTIONS[url_name][1])
    # then
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url_name", "service", "data"),
    [
        ("exception-retry", "exception_retry", {"reason": "again"}),
        ("exception-resolve", "exception_resolve", {"code": "duplicate", "reason": "dup"}),
        ("exception-ignore", "exception_ignore", {"reason": "dup"}),
        ("exception-assign", "exception_assign", {"assignee": "me", "reason": "mine"}),
        ("exception-comment", "exception_comment", {"body": "on it"}),
    ],
)
def test_a_bug_behind_an_action_is_a_500_not_a_message(
    client, monkeypatch, url_name, service, data
):
    # given
    exc = raise_exception()
    before = snapshot(exc)
    client.force_login(user_for("integration_support"))

    def broken(**_: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(services, service, broken)
    client.raise_request_exception = False
    # when
    response = client.post(reverse(url_name, args=[exc.pk]), data)
    # then
    assert response.status_code == 500
    assert snapshot(exc) == before


@pytest.mark.django_db
def test_a_retry_that_fails_again_keeps_counting_attempts_and_the_orders_time_on_hold():
    # given: a step that failed once, its order held
    exc = raise_exception()
    held_at = exc.order.__class__.objects.get(pk=exc.order_id).state_changed_at
    step = exc.step_run
    assert (step.attempts, step.max_attempts) == (1, 5)
    actor = Actor.person(user_for("sales_ops"))
    # when: it is retried twice and fails again each time
    for attempt in (2, 3):
        planned[(exc.order.enterprise_id, "create_customer")] = [
            StepFailed(f"still rejected ({attempt})", category="master_data")
        ]
        services.exception_retry(exception=exc, actor=actor, reason="again")
        drain(exc.workflow_run)
    # then: the step shows every attempt it made, with a fresh budget after each retry
    step.refresh_from_db()
    assert (step.state, step.attempts, step.max_attempts) == (StepState.FAILED, 3, 7)
    exc.refresh_from_db()
    assert (exc.state, exc.message) == (ExceptionState.OPEN, "still rejected (3)")
    # ... and the order has been on hold since the first failure, not since the last retry
    order = exc.order.__class__.objects.get(pk=exc.order_id)
    assert (order.state, order.state_changed_at) == (OrderState.ON_HOLD, held_at)
    releases = order.history.filter(history_change_reason__startswith="user-sales_ops retries")
    assert [row.state_changed_at for row in releases] == [held_at, held_at]
