"""Two approvers at once, and a redelivered execution message, on real connections: one
thread per person or worker, each with its own database connection, committed for real."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import redis
from django.conf import settings
from django_fsm import ConcurrentTransition

from core.audit import Actor
from core.errors import Refused
from core.problems import Category
from exceptions import services
from exceptions.models import Replay, ReplayKind, ReplayState
from tests.exceptions.helpers import raise_exception
from tests.integration.workers import broker_flush
from tests.q2c.test_concurrency import WAIT, _run_in_threads

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://"),
    reason="counts the execution messages on the Redis broker",
)


def execution_messages() -> list[int]:
    """The replay ids of the execute_replay messages waiting on the broker's default queue."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        raw = client.lrange("default", 0, -1)
    finally:
        client.close()
    found = []
    for message in raw:
        envelope = json.loads(message)
        if envelope["headers"]["task"] == "exceptions.execute_replay":
            args, _, _ = json.loads(_body(envelope))
            found.append(args[0])
    return found


def _body(envelope: dict) -> str:
    return base64.b64decode(envelope["body"]).decode()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_yield_exactly_one_approval_and_one_execution(make_user):
    # given
    broker_flush()
    exc = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    maker = make_user("maker", "sales_ops")
    checkers = [make_user("checker-a", "finance_ops"), make_user("checker-b", "finance_ops")]
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exc.step_run, actor=Actor.person(maker), reason="again"
    )
    barrier = threading.Barrier(2)

    def approve(user) -> str:
        mine = Replay.objects.get(pk=replay.pk)
        barrier.wait(WAIT)  # both hold the request in 'requested' before either saves
        services.replay_approve(replay=mine, actor=Actor.person(user), reason=f"ok {user}")
        return user.username

    # when
    outcomes = _run_in_threads([lambda: approve(checkers[0]), lambda: approve(checkers[1])])
    # then
    won = [o for o in outcomes if isinstance(o, str)]
    lost = [(type(o), o.kind, type(o.__cause__)) for o in outcomes if not isinstance(o, str)]
    assert (len(won), lost) == (1, [(Refused, Refused.Kind.CONFLICT, ConcurrentTransition)])
    replay.refresh_from_db()
    assert (replay.state, replay.decided_by.username) == (ReplayState.APPROVED, won[0])
    assert list(replay.history.order_by("history_id").values_list("state", flat=True)) == [
        "requested",
        "approved",
    ]
    assert execution_messages() == [replay.pk]


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_execution_message_runs_the_replay_once(make_user):
    # given
    exc = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exc.step_run,
        actor=Actor.person(make_user("maker", "sales_ops")), reason="again",
    )  # fmt: skip
    services.replay_approve(
        replay=replay, actor=Actor.person(make_user("checker", "finance_ops")), reason="ok"
    )
    barrier = threading.Barrier(2)

    def execute() -> str:
        barrier.wait(WAIT)
        return services.replay_execute(replay_id=replay.pk)

    # when
    outcomes = _run_in_threads([execute, execute])
    # then
    assert sorted(outcomes) == ["nothing to do", ReplayState.RUNNING]
    replay.refresh_from_db()
    assert replay.state == ReplayState.RUNNING
    # One start and one record of the steps it queued: a second execution would add two more.
    assert list(replay.history.order_by("history_id").values_list("state", flat=True)) == [
        "requested", "approved", "running", "running",
    ]  # fmt: skip
