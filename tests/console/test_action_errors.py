"""A console action shows a service's refusal as a message, and nothing else: a programming
error behind it stays a 500 with its traceback, never a flash message."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from console.views import records as views
from core.errors import Refused
from exceptions.models import ExceptionState
from orchestration.workflows.models import StepState
from q2c import services as q2c_services
from tests.console.helpers import sign_in
from tests.exceptions.helpers import raise_exception


def broken(**_: Any) -> None:
    raise ValueError("a bug")


def refusing(**_: Any) -> None:
    raise Refused("the step is refused for a reason an operator reads", kind=Refused.Kind.STATE)


@pytest.mark.django_db
def test_a_bug_behind_a_step_retry_is_raised_not_shown_as_a_message(client, test_flow, monkeypatch):
    # given
    exc = raise_exception()
    assert exc.order is not None and exc.step_run is not None
    sign_in(client, "sales_ops")
    monkeypatch.setattr(views, "step_retry_for_operator", broken)
    url = reverse("order-step-retry", args=[exc.order.enterprise_id, exc.step_run.pk])
    # when / then: the test client re-raises what the view let through
    with pytest.raises(ValueError, match="a bug"):
        client.post(url, {"reason": "again"})
    client.raise_request_exception = False
    response = client.post(url, {"reason": "again"})
    assert response.status_code == 500
    exc.refresh_from_db()
    exc.step_run.refresh_from_db()
    assert (exc.state, exc.step_run.state) == (ExceptionState.OPEN, StepState.FAILED)


@pytest.mark.django_db
def test_a_refused_step_retry_is_shown_as_a_message(client, test_flow, monkeypatch):
    # given
    exc = raise_exception()
    assert exc.order is not None and exc.step_run is not None
    sign_in(client, "sales_ops")
    monkeypatch.setattr(views, "step_retry_for_operator", refusing)
    # when
    response = client.post(
        reverse("order-step-retry", args=[exc.order.enterprise_id, exc.step_run.pk]),
        {"reason": "again"},
        follow=True,
    )
    # then
    assert [(m.level_tag, m.message) for m in response.context["messages"]] == [
        ("error", "the step is refused for a reason an operator reads")
    ]


@pytest.mark.django_db
def test_a_bug_behind_hold_is_a_500(client, test_flow, monkeypatch):
    # given
    exc = raise_exception()
    order = exc.order
    assert order is not None
    sign_in(client, "sales_ops")
    monkeypatch.setattr(q2c_services, "order_release", broken)
    client.raise_request_exception = False
    # when
    response = client.post(
        reverse("order-hold", args=[order.enterprise_id]), {"reason": "customer paid"}
    )
    # then
    assert response.status_code == 500
    order.refresh_from_db()
    assert order.state == "on_hold"
