"""The admin for the exception queue and the workflow engine's records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from core.problems import Category
from exceptions.models import ExceptionState
from orchestration.workflows.models import CircuitBreaker, StepRun
from tests.exceptions.helpers import ADMIN, raise_exception, user_for


@pytest.fixture
def admin_user(db: Any) -> Any:
    return user_for(ADMIN)


@pytest.fixture
def admin_client(client: Any, admin_user: Any) -> Any:
    client.force_login(admin_user)
    return client


def listed(response: Any) -> list[int]:
    return [obj.pk for obj in response.context["cl"].result_list]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, expected",
    [
        ({"q": "address"}, ["downstream"]),
        ({"q": "ORD-"}, ["downstream", "master_data"]),
        ({"category__exact": "master_data"}, ["master_data"]),
        ({"system__exact": "billing"}, ["downstream"]),
        ({"owner_team__exact": "integration_support"}, ["downstream"]),
        ({"state__exact": "open"}, ["downstream", "master_data"]),
    ],
)
def test_exception_changelist_searches_and_filters(admin_client, params, expected):
    # given
    raised = {
        "master_data": raise_exception(),
        "downstream": raise_exception(
            step="create_subscription",
            category=Category.DOWNSTREAM_API,
            error_class="HTTP400",
            message="billing refused the address",
        ),
    }
    # when
    response = admin_client.get(reverse("admin:exceptions_operationalexception_changelist"),
                                params)  # fmt: skip
    # then
    assert response.status_code == 200
    assert listed(response) == [raised[name].pk for name in expected]


@pytest.mark.django_db
def test_exception_search_by_correlation_id_finds_exactly_that_deal(admin_client):
    # given
    first = raise_exception()
    raise_exception()
    # when
    response = admin_client.get(
        reverse("admin:exceptions_operationalexception_changelist"), {"q": first.correlation_id}
    )
    # then
    assert listed(response) == [first.pk]


@pytest.mark.django_db
def test_exception_state_and_context_are_read_only_and_it_cannot_be_added(admin_client):
    # given
    exc = raise_exception()
    # when
    change = admin_client.get(
        reverse("admin:exceptions_operationalexception_change", args=[exc.pk])
    )
    add = admin_client.get(reverse("admin:exceptions_operationalexception_add"))
    # then
    assert change.status_code == 200
    assert sorted(change.context["adminform"].form.fields) == [
        "assignee",
        "owner_team",
        "severity",
    ]
    assert add.status_code == 403


@pytest.mark.django_db
def test_ignore_action_closes_the_exception_as_the_admin(admin_client, admin_user):
    # given
    exc = raise_exception()
    # when
    response = admin_client.post(
        reverse("admin:exceptions_operationalexception_changelist"),
        {"action": "action_exception_ignore", ACTION_CHECKBOX_NAME: [str(exc.pk)], "index": "0"},
        follow=True,
    )
    # then
    assert [m.message for m in response.context["messages"]] == ["Ignore: 1 done"]
    exc.refresh_from_db()
    assert exc.state == ExceptionState.IGNORED
    last = exc.history.order_by("-history_id").first()
    assert (last.history_user, last.history_change_reason) == (admin_user, "admin action: Ignore")


@pytest.mark.django_db
def test_workflow_run_page_shows_its_steps_read_only(admin_client):
    # given
    exc = raise_exception()
    run = exc.workflow_run
    # when
    response = admin_client.get(reverse("admin:orchestration_workflowrun_change", args=[run.pk]))
    post = admin_client.post(
        reverse("admin:orchestration_workflowrun_change", args=[run.pk]), {"kind": "changed"}
    )
    # then
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0]
    assert [form.original.name for form in formset] == [
        "check_quote",
        "create_customer",
        "create_subscription",
    ]
    assert formset.has_change_permission is False
    assert post.status_code == 403
    run.refresh_from_db()
    assert run.kind == "exceptions_test_flow"
    assert StepRun.objects.filter(run=run).count() == 3


@pytest.mark.django_db
def test_circuit_breaker_list_shows_state_failures_and_open_until(admin_client):
    # given
    until = timezone.now() + dt.timedelta(seconds=30)
    CircuitBreaker.objects.create(system="erp", state="open", consecutive_failures=5,
                                  opened_at=timezone.now(), open_until=until)  # fmt: skip
    # when
    response = admin_client.get(reverse("admin:orchestration_circuitbreaker_changelist"))
    add = admin_client.get(reverse("admin:orchestration_circuitbreaker_add"))
    # then
    assert response.status_code == 200
    assert list(response.context["cl"].list_display[:5]) == [
        "system", "state", "consecutive_failures", "opened_at", "open_until",
    ]  # fmt: skip
    page = response.content.decode()
    assert '<td class="field-state">Open</td>' in page
    assert '<td class="field-consecutive_failures">5</td>' in page
    assert add.status_code == 403
