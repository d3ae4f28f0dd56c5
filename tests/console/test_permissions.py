"""Who may open the timeline, read a payload and retry a step: generated from the roles and
the page table like the page matrix, with the written policy checked once."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from core.navigation import PAGE_BY_NAME
from core.roles import ROLES
from exceptions.models import ExceptionState
from orchestration.models import OutboundCall
from orchestration.workflows.models import StepState
from tests import factories
from tests.console.test_permission_matrix import ANONYMOUS, WHO, may_open, user_for
from tests.exceptions.helpers import raise_exception

ORCHESTRATION_VIEW = {
    "orchestration.view_outboundcall",
    "orchestration.view_inboundevent",
    "orchestration.view_workflowrun",
    "orchestration.view_steprun",
    "orchestration.view_circuitbreaker",
}


def may(user: Any, page: str, *perms: str) -> bool:
    return may_open(user, PAGE_BY_NAME[page]) and all(user.has_perm(p) for p in perms)


def expect(client: Any, user: Any, response: Any, allowed: bool, ok: int = 200) -> None:
    if not user.is_authenticated:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")
    else:
        assert response.status_code == (ok if allowed else 403)


@pytest.mark.django_db
@pytest.mark.parametrize("who", WHO)
def test_timelines_are_served_exactly_to_those_who_may_see_the_record(client, who):
    # given
    user = user_for(who)
    if user.is_authenticated:
        client.force_login(user)
    order = factories.order()
    contract = factories.contract()
    # when
    order_page = client.get(reverse("order-timeline", args=[order.enterprise_id]))
    contract_page = client.get(reverse("contract-timeline", args=[contract.enterprise_id]))
    # then
    expect(client, user, order_page, may(user, "order-list"))
    expect(client, user, contract_page, may(user, "contract-list"))


@pytest.mark.django_db
@pytest.mark.parametrize("who", WHO)
def test_payloads_are_served_exactly_to_those_who_may_read_outbound_calls(client, who):
    # given
    user = user_for(who)
    if user.is_authenticated:
        client.force_login(user)
    call = OutboundCall.objects.create(
        system="erp", operation="op", method="POST", path="x", status_code=200, outcome="ok",
        latency_ms=1, request_body="{}",
    )  # fmt: skip
    # when
    response = client.get(reverse("outbound-call-payload", args=[call.pk]))
    # then
    expect(client, user, response, may(user, "order-list", "orchestration.view_outboundcall"))


@pytest.mark.django_db
@pytest.mark.parametrize("who", WHO)
def test_step_retry_is_done_exactly_for_those_who_may_retry(client, test_flow, who):
    # given
    user = user_for(who)
    if user.is_authenticated:
        client.force_login(user)
    exc = raise_exception()
    allowed = may(user, "order-list", "exceptions.retry_exception")
    # when
    response = client.post(
        reverse("order-step-retry", args=[exc.order.enterprise_id, exc.step_run_id]),
        {"reason": "source fixed"},
    )
    # then
    expect(client, user, response, allowed, ok=302)
    exc.refresh_from_db()
    exc.step_run.refresh_from_db()
    assert (exc.state, exc.step_run.state) == (
        (ExceptionState.RETRYING, StepState.QUEUED)
        if allowed and who != ANONYMOUS
        else (ExceptionState.OPEN, StepState.FAILED)
    )


@pytest.mark.django_db
def test_integration_support_and_auditors_read_what_the_timeline_shows_from_orchestration():
    # given
    users = {role: user_for(role) for role in ROLES}
    # when
    readers = {
        role for role, user in users.items() if all(user.has_perm(p) for p in ORCHESTRATION_VIEW)
    }
    # then
    assert readers == {"integration_support", "auditor"}
