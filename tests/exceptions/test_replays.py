"""Replays with maker-checker approval: request, preview, approve/reject, execute."""

from __future__ import annotations

import datetime as dt
from itertools import count

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from core.audit import Actor
from core.errors import Refused
from core.problems import Category
from exceptions import services
from exceptions.models import ExceptionState, Replay, ReplayKind, ReplayState
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import RunState, StepRun, StepState
from q2c.models import OrderState
from tests.exceptions.helpers import drain, planned, raise_exception

_people = count(1)


def person(who: str, name: str = "") -> Actor:
    """A fresh person in role ``who`` (each call a different user)."""
    user = get_user_model().objects.create_user(
        username=name or f"{who}-{next(_people)}", password="pw"
    )
    user.groups.add(Group.objects.get(name=who))
    return Actor.person(user)


def failed_at_subscription():
    """An exception on create_subscription, after create_customer's effect happened."""
    exc = raise_exception(
        step="create_subscription",
        category=Category.DOWNSTREAM_API,
        message="billing refused the subscription",
        error_class="billing.invalid_request",
    )
    steps = {s.name: s for s in StepRun.objects.filter(run=exc.workflow_run)}
    return exc, steps


def history(replay: Replay) -> list[tuple[str, str, str]]:
    return list(
        replay.history.order_by("history_id").values_list(
            "state", "history_user__username", "history_change_reason"
        )
    )


@pytest.mark.django_db
def test_a_request_stores_the_dry_run_preview_and_waits_for_approval():
    # given
    exc, steps = failed_at_subscription()
    maker = person("sales_ops")
    # when
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_customer"], actor=maker, reason="billing fixed"
    )
    # then
    assert (replay.state, replay.exception, replay.workflow_run) == (
        ReplayState.REQUESTED,
        exc,
        exc.workflow_run,
    )
    assert [(row["name"], row["action"]) for row in replay.preview["steps"]] == [
        ("create_customer", "skip"),
        ("create_subscription", "run"),
    ]
    assert replay.preview["steps"][0]["detail"] == (
        f"effect exists in erp: CREATE_CUSTOMER-{exc.order.enterprise_id}"
    )
    assert [send["step"] for send in replay.preview["sends"]] == ["create_subscription"]
    assert history(replay) == [("requested", maker.name, "billing fixed")]


@pytest.mark.django_db
def test_an_approved_replay_reruns_the_failed_step_skips_the_existing_effect_and_resolves():
    # given
    exc, steps = failed_at_subscription()
    maker, checker = person("sales_ops"), person("finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_customer"], actor=maker, reason="billing fixed"
    )
    # when
    services.replay_approve(replay=replay, actor=checker, reason="looks right")
    outcome = services.replay_execute(replay_id=replay.pk)
    drain(exc.workflow_run)
    # then
    assert outcome == ReplayState.RUNNING
    replay.refresh_from_db()
    exc.refresh_from_db()
    assert replay.state == ReplayState.SUCCEEDED
    assert replay.result_message == "every step succeeded"
    assert replay.result["steps"] == [
        {"pk": steps["create_customer"].pk, "name": "create_customer", "state": "succeeded",
         "skipped_effect": True},
        {"pk": steps["create_subscription"].pk, "name": "create_subscription",
         "state": "succeeded", "skipped_effect": False},
    ]  # fmt: skip
    assert (exc.state, exc.resolution_code) == (ExceptionState.RESOLVED, "retry_succeeded")
    assert exc.workflow_run.state == RunState.COMPLETED
    assert [row[0] for row in history(replay)] == [
        "requested", "approved", "running", "running", "succeeded",
    ]  # fmt: skip
    assert history(replay)[1] == ("approved", checker.name, "looks right")


@pytest.mark.django_db
def test_a_replay_whose_step_fails_again_is_recorded_as_failed():
    # given
    exc, steps = failed_at_subscription()
    planned[(exc.order.enterprise_id, "create_subscription")] = [
        StepFailed("still refused", category="downstream_api")
    ]
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("sales_ops"),
        reason="try again",
    )  # fmt: skip
    services.replay_approve(replay=replay, actor=person("finance_ops"), reason="ok")
    # when
    services.replay_execute(replay_id=replay.pk)
    drain(exc.workflow_run)
    # then
    replay.refresh_from_db()
    exc.refresh_from_db()
    assert (replay.state, replay.result_message) == (
        ReplayState.FAILED,
        "step create_subscription failed: still refused",
    )
    assert (exc.state, exc.message) == (ExceptionState.OPEN, "still refused")
    assert exc.order.state == OrderState.ON_HOLD


@pytest.mark.django_db
def test_the_requester_cannot_approve_their_own_replay_and_nothing_changes():
    # given
    _exc, steps = failed_at_subscription()
    maker = person("finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=maker, reason="again"
    )
    # when
    with pytest.raises(PermissionDenied, match="cannot approve it: another person must"):
        services.replay_approve(replay=Replay.objects.get(pk=replay.pk), actor=maker, reason="me")
    # then
    replay.refresh_from_db()
    assert (replay.state, replay.decided_by) == (ReplayState.REQUESTED, None)
    assert len(history(replay)) == 1


@pytest.mark.django_db
def test_the_database_refuses_a_decider_who_is_the_requester():
    # given
    _exc, steps = failed_at_subscription()
    maker = person("finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=maker, reason="again"
    )
    # when / then
    with (
        pytest.raises(IntegrityError, match="replay_decider_is_not_requester"),
        transaction.atomic(),
    ):
        Replay.objects.filter(pk=replay.pk).update(decided_by=maker.user)
    replay.refresh_from_db()
    assert replay.decided_by is None


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["sales_ops", "integration_support", "data_steward", "auditor"])
def test_only_finance_ops_may_approve(who):
    # given
    _exc, steps = failed_at_subscription()
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("sales_ops"),
        reason="again",
    )  # fmt: skip
    # when / then
    with pytest.raises(PermissionDenied, match="may not approve replays"):
        services.replay_approve(replay=replay, actor=person(who, f"{who}-checker"), reason="ok")
    replay.refresh_from_db()
    assert replay.state == ReplayState.REQUESTED


@pytest.mark.django_db
def test_the_auditor_may_not_request_a_replay():
    # given
    _exc, steps = failed_at_subscription()
    # when / then
    with pytest.raises(PermissionDenied, match="may not request replays"):
        services.replay_request(
            kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("auditor"),
            reason="again",
        )  # fmt: skip
    assert Replay.objects.count() == 0


@pytest.mark.django_db
def test_a_rejected_replay_is_never_executed():
    # given
    _exc, steps = failed_at_subscription()
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("sales_ops"),
        reason="again",
    )  # fmt: skip
    services.replay_reject(replay=replay, actor=person("finance_ops"), reason="fix billing first")
    # when
    outcome = services.replay_execute(replay_id=replay.pk)
    # then
    replay.refresh_from_db()
    assert outcome == "nothing to do"
    assert (replay.state, replay.decision_reason) == (ReplayState.REJECTED, "fix billing first")
    assert StepRun.objects.get(pk=steps["create_subscription"].pk).state == StepState.FAILED


@pytest.mark.django_db
def test_a_second_request_for_the_same_run_is_refused_while_one_is_pending():
    # given
    exc, steps = failed_at_subscription()
    services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("sales_ops"),
        reason="again",
    )  # fmt: skip
    # when / then
    with pytest.raises(Refused, match="for this run is still requested"):
        services.replay_request(
            kind=ReplayKind.WORKFLOW, workflow_run=exc.workflow_run,
            actor=person("data_steward"), reason="again",
        )  # fmt: skip
    assert Replay.objects.count() == 1


@pytest.mark.django_db
def test_a_corrected_payload_is_refused_for_a_step_that_declares_no_input():
    # given: a data failure, but nothing would read a correction of this step (it used to be
    # stored and handed to the step, which ignored it); see test_corrected_payloads.py for
    # the quote-to-cash steps that take one
    exc = raise_exception(step="create_customer")  # master data
    # when / then
    with pytest.raises(Refused, match="step create_customer takes no corrected payload"):
        services.replay_request(
            kind=ReplayKind.STEP, step_run=exc.step_run, actor=person("data_steward"),
            reason="tax id fixed", corrected_payload={**exc.context, "tax_id": "GB123456789"},
        )  # fmt: skip
    assert Replay.objects.count() == 0


@pytest.mark.django_db
def test_the_original_payload_of_a_step_without_input_is_the_exceptions_context():
    # given
    exc = raise_exception(step="create_customer")
    # when
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exc.step_run, actor=person("data_steward"),
        reason="tax id fixed in the ERP",
    )  # fmt: skip
    # then
    assert (replay.original_payload, replay.corrected_payload) == (exc.context, None)
    assert replay.preview["uses"] is None


@pytest.mark.django_db
def test_a_corrected_payload_is_refused_for_a_downstream_outage():
    # given
    _exc, steps = failed_at_subscription()
    # when / then
    with pytest.raises(Refused, match="not for downstream_api"):
        services.replay_request(
            kind=ReplayKind.STEP, step_run=steps["create_subscription"],
            actor=person("sales_ops"), reason="again", corrected_payload={"x": 1},
        )  # fmt: skip
    assert Replay.objects.count() == 0


@pytest.mark.django_db
def test_a_long_reason_is_kept_whole_on_the_replay_and_cut_to_fit_the_history_column():
    # given
    _exc, steps = failed_at_subscription()
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("sales_ops"),
        reason="again",
    )  # fmt: skip
    long_reason = "checked with billing and finance; " * 10
    # when
    services.replay_approve(replay=replay, actor=person("finance_ops"), reason=long_reason)
    # then
    replay.refresh_from_db()
    assert replay.decision_reason == long_reason
    newest = replay.history.order_by("-history_id").values_list("history_change_reason")[0][0]
    assert newest == long_reason[:99] + "…"


@pytest.mark.django_db
def test_the_sweeper_resends_only_approved_replays_whose_message_was_lost(
    django_capture_on_commit_callbacks,
):
    # given
    _exc, steps = failed_at_subscription()
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=steps["create_subscription"], actor=person("sales_ops"),
        reason="again",
    )  # fmt: skip
    services.replay_approve(replay=replay, actor=person("finance_ops"), reason="ok")
    replay.refresh_from_db()
    # when
    with django_capture_on_commit_callbacks(execute=False) as fresh:
        soon = services.replays_sweep(now=replay.decided_at + dt.timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=False) as late:
        later = services.replays_sweep(now=replay.decided_at + dt.timedelta(minutes=3))
    services.replay_execute(replay_id=replay.pk)
    after_start = services.replays_sweep(now=replay.decided_at + dt.timedelta(minutes=3))
    # then
    assert (soon, len(fresh), later, len(late), after_start) == (0, 0, 1, 1, 0)
