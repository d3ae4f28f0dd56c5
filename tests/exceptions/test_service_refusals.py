"""The queue's rules live in its services: called directly (as a view, the API, a bulk action,
the admin or a script would), each refuses with the exact message an operator reads, its
kind, and nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from core.audit import Actor
from core.errors import ReasonRequired, Refused
from exceptions import selectors, services
from exceptions.models import ExceptionState, OperationalException
from orchestration.workflows.models import StepRun, StepState
from q2c.models import OrderState
from tests.exceptions.helpers import raise_exception, user_for
from tests.exceptions.helpers import snapshot as action_snapshot

WORKER = "worker"


def person(role: str) -> Actor:
    return Actor.person(user_for(role))


def snapshot(exc: OperationalException) -> tuple[Any, ...]:
    """What an action could change, read fresh: the exception, its step, run and order, who
    it is assigned to, and the order's history."""
    fresh = OperationalException.objects.select_related("step_run", "order").get(pk=exc.pk)
    assert fresh.step_run is not None and fresh.order is not None
    return (
        *action_snapshot(exc),
        fresh.assignee_id,
        fresh.step_run.attempts,
        fresh.order.history.count(),
    )


def ignored(exc: OperationalException) -> OperationalException:
    """``exc`` ignored by the platform; returns a copy read before, still saying 'open'."""
    stale = OperationalException.objects.get(pk=exc.pk)
    services.exception_ignore(exception=exc, actor=Actor.system(WORKER), reason="duplicate")
    return stale


# --- Retry ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retrying_an_exception_that_is_no_longer_open_is_refused_by_the_service():
    # given: the caller holds a copy read while it was open
    exc = raise_exception()
    stale = ignored(exc)
    before = snapshot(exc)
    # when
    with pytest.raises(Refused) as refused:
        services.exception_retry(exception=stale, actor=person("sales_ops"), reason="again")
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.STATE,
        f"EXC-{exc.pk} is ignored; only an open exception is retried",
    )
    assert snapshot(exc) == before


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "   "])
def test_retrying_without_a_reason_is_refused_by_the_service(reason):
    # given
    exc = raise_exception()
    before = snapshot(exc)
    # when
    with pytest.raises(ReasonRequired) as refused:
        services.exception_retry(exception=exc, actor=person("sales_ops"), reason=reason)
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.REASON_REQUIRED,
        "a reason is required to retry",
    )
    assert snapshot(exc) == before


# --- Retrying a step from the timeline ---------------------------------------------------------


@pytest.mark.django_db
def test_a_step_with_an_open_exception_is_retried_through_the_exception():
    # given
    exc = raise_exception()
    assert exc.step_run is not None
    # when
    step = services.step_retry_for_operator(
        step=exc.step_run, actor=person("sales_ops"), reason="tax id fixed"
    )
    # then
    exc.refresh_from_db()
    assert exc.order is not None
    exc.order.refresh_from_db()
    assert (step.state, exc.state, exc.order.state) == (
        StepState.QUEUED,
        ExceptionState.RETRYING,
        OrderState.RECEIVED,
    )


@pytest.mark.django_db
def test_a_failed_step_without_an_open_exception_is_retried_by_the_engine():
    # given: its exception was ignored, the step is still failed
    exc = raise_exception()
    ignored(exc)
    assert exc.step_run is not None
    # when
    step = services.step_retry_for_operator(
        step=exc.step_run, actor=person("sales_ops"), reason="try once more"
    )
    # then
    exc.refresh_from_db()
    # the attempt it made is kept, with a fresh budget on top
    assert (step.state, step.attempts, step.max_attempts, exc.state) == (
        StepState.QUEUED, 1, 6, ExceptionState.IGNORED
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("with_exception", [True, False])
def test_retrying_a_step_without_a_reason_is_refused_either_way(with_exception):
    # given
    exc = raise_exception()
    if not with_exception:
        ignored(exc)
    before = snapshot(exc)
    assert exc.step_run is not None
    # when
    with pytest.raises(ReasonRequired) as refused:
        services.step_retry_for_operator(step=exc.step_run, actor=person("sales_ops"), reason=" ")
    # then
    assert refused.value.message == "a reason is required to retry"
    assert snapshot(exc) == before


@pytest.mark.django_db
def test_retrying_a_step_that_has_not_failed_is_refused():
    # given: the step before the failed one succeeded
    exc = raise_exception()
    done = StepRun.objects.get(run=exc.workflow_run, name="check_quote")
    before = snapshot(exc)
    # when
    with pytest.raises(Refused) as refused:
        services.step_retry_for_operator(step=done, actor=person("sales_ops"), reason="again")
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.STATE,
        "step check_quote is succeeded, only a failed step is retried",
    )
    assert snapshot(exc) == before


@pytest.mark.django_db
def test_retrying_a_step_needs_the_retry_permission():
    # given
    exc = raise_exception()
    before = snapshot(exc)
    assert exc.step_run is not None
    # when
    with pytest.raises(PermissionDenied):
        services.step_retry_for_operator(step=exc.step_run, actor=person("auditor"), reason="x")
    # then
    assert snapshot(exc) == before


# --- Resolve ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["", "retry_succeeded", "resolved_in_admin", "made_up"])
def test_resolving_with_a_code_an_operator_may_not_choose_is_refused(code):
    # given
    exc = raise_exception()
    before = snapshot(exc)
    # when
    with pytest.raises(Refused) as refused:
        services.exception_resolve(
            exception=exc, code=code, actor=person("finance_ops"), reason="fixed"
        )
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        f"choose a resolution code to resolve EXC-{exc.pk}",
    )
    assert snapshot(exc) == before


@pytest.mark.django_db
def test_the_admin_resolves_with_its_own_code():
    # given
    exc = raise_exception()
    # when
    services.exception_resolve_in_admin(
        exception=exc, actor=person("finance_ops"), reason="closed by hand"
    )
    # then
    exc.refresh_from_db()
    assert (exc.state, exc.resolution_code, exc.resolution_note) == (
        ExceptionState.RESOLVED,
        "resolved_in_admin",
        "closed by hand",
    )


# --- Assign -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_assigning_to_a_person_without_a_role_is_refused_by_the_service():
    # given
    exc = raise_exception()
    outsider = user_for("no role")
    before = snapshot(exc)
    # when
    with pytest.raises(Refused) as refused:
        services.exception_assign(
            exception=exc, assignee=outsider, actor=person("finance_ops"), reason="yours"
        )
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        "user-no-role has no role in Tandem and cannot be assigned",
    )
    assert snapshot(exc) == before


@pytest.mark.django_db
@pytest.mark.parametrize("choice", ["nobody", "0", "999999", "no role"])
def test_an_assignee_choice_that_is_not_a_person_with_a_role_is_refused(choice):
    # given
    outsider = user_for("no role")
    value = str(outsider.pk) if choice == "no role" else choice
    # when
    with pytest.raises(Refused) as refused:
        selectors.assignee_choose(choice=value, me=user_for("sales_ops"))
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        "choose a person with a role in Tandem",
    )


@pytest.mark.django_db
def test_an_assignee_choice_is_me_nobody_or_a_person_with_a_role():
    # given
    me = user_for("sales_ops")
    colleague = user_for("finance_ops")
    # when
    chosen = [
        selectors.assignee_choose(choice=value, me=me) for value in ("me", "", str(colleague.pk))
    ]
    # then
    assert chosen == [me, None, colleague]


# --- Bulk -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_bulk_resolve_without_a_code_is_refused_whole():
    # given
    excs = [raise_exception(), raise_exception()]
    before = [snapshot(exc) for exc in excs]
    # when
    with pytest.raises(Refused) as refused:
        services.exceptions_bulk(
            action="resolve", pks=[exc.pk for exc in excs], actor=person("finance_ops"),
            reason="fixed", code="",
        )  # fmt: skip
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        "choose a resolution code",
    )
    assert [snapshot(exc) for exc in excs] == before


@pytest.mark.django_db
def test_a_bulk_retry_reports_an_exception_that_is_not_open_with_the_services_message():
    # given
    open_one, closed = raise_exception(), raise_exception()
    ignored(closed)
    # when
    report = services.exceptions_bulk(
        action="retry", pks=[open_one.pk, closed.pk], actor=person("sales_ops"), reason="again"
    )
    # then
    assert [(item.pk, item.ok, item.message) for item in report.items] == [
        (open_one.pk, True, "step create_customer queued to run again"),
        (closed.pk, False, f"EXC-{closed.pk} is ignored; only an open exception is retried"),
    ]


@pytest.mark.django_db
def test_a_bug_in_a_bulk_action_propagates_instead_of_becoming_an_item_refusal(monkeypatch):
    # given
    exc = raise_exception()
    before = snapshot(exc)

    def broken(**_: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(services, "exception_assign", broken)
    # when / then
    with pytest.raises(ValueError, match="a bug"):
        services.exceptions_bulk(
            action="assign", pks=[exc.pk], actor=person("finance_ops"), reason="mine"
        )
    assert snapshot(exc) == before


@pytest.mark.django_db
def test_a_bulk_action_the_actor_may_not_run_is_denied_not_reported_per_item():
    # given
    exc = raise_exception()
    before = snapshot(exc)
    # when / then
    with pytest.raises(PermissionDenied):
        services.exceptions_bulk(
            action="resolve", pks=[exc.pk], actor=person("auditor"), reason="x",
            code="duplicate",
        )  # fmt: skip
    assert snapshot(exc) == before
