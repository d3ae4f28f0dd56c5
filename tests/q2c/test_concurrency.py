"""Races between workers, on real connections: one thread per worker, each with its own
database connection (Django's connections are per thread), committed for real.

On PostgreSQL the loser's UPDATE waits for the winner's row lock; on SQLite (a file database
with IMMEDIATE transactions) the loser waits for the write lock. Either way it then finds the
state changed and loses cleanly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections, transaction
from django_fsm import ConcurrentTransition

from core.audit import Actor
from core.errors import Refused
from core.identifiers import PREFIXES, IdentifierCounter, format_identifier, identifier_allocate
from q2c import services
from q2c.models import Order, OrderState
from tests import factories

# A safety net so a broken thread fails the test instead of hanging it; not an assertion.
WAIT = 60


def _run_in_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    """Run each target in its own thread; return what each returned or raised, in order."""
    outcomes: list[Any] = [None] * len(targets)

    def run(index: int, target: Callable[[], Any]) -> None:
        try:
            outcomes[index] = target()
        except BaseException as exc:  # reported to the test, which asserts on it
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(index, target)) for index, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    return outcomes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("validate", "validate"),
        ("hold", "cancel"),
    ],
)
def test_two_workers_race_on_one_order_and_exactly_one_wins(first, second):
    # given
    order = factories.order()
    actor = Actor.system("worker")
    history_before = order.history.count()
    barrier = threading.Barrier(2)

    def worker(transition: str) -> str:
        mine = Order.objects.get(pk=order.pk)
        barrier.wait(WAIT)  # both have loaded the order in 'received' before either saves
        service = getattr(services, f"order_{transition}")
        service(order=mine, actor=actor, reason=f"{transition} by its worker")
        return transition

    # when
    outcomes = _run_in_threads([lambda: worker(first), lambda: worker(second)])
    # then
    won = [o for o in outcomes if isinstance(o, str)]
    lost = [o for o in outcomes if not isinstance(o, str)]
    assert len(won) == 1
    assert [(type(o), o.kind, type(o.__cause__)) for o in lost] == [
        (Refused, Refused.Kind.CONFLICT, ConcurrentTransition)
    ]
    winner = Order.objects.get(pk=order.pk)
    expected_state = {"validate": "validated", "hold": "on_hold", "cancel": "cancelled"}[won[0]]
    assert winner.state == expected_state
    assert order.history.count() == history_before + 1
    newest = order.history.order_by("-history_id").values_list(
        "state", "history_user__username", "history_change_reason"
    )[0]
    assert newest == (expected_state, "worker", f"{won[0]} by its worker")


@pytest.mark.django_db(transaction=True)
def test_concurrent_allocations_are_unique_and_gap_free():
    # given
    prefix = PREFIXES["order"]
    # Numbering starts afresh, whatever earlier transactional tests committed.
    IdentifierCounter.objects.update_or_create(prefix=prefix, defaults={"last_value": 0})
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)

    def allocate() -> list[str]:
        barrier.wait(WAIT)
        mine = []
        for _ in range(per_thread):
            with transaction.atomic():
                mine.append(identifier_allocate(prefix=prefix))
        return mine

    # when
    outcomes = _run_in_threads([allocate] * threads)
    # then
    assert [type(o) for o in outcomes] == [list] * threads
    allocated = sorted(identifier for batch in outcomes for identifier in batch)
    assert allocated == [format_identifier(prefix, n) for n in range(1, 201)]
    assert IdentifierCounter.objects.get(prefix=prefix).last_value == 200


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_allocation_gives_its_number_back():
    # given
    prefix = PREFIXES["order"]
    IdentifierCounter.objects.update_or_create(prefix=prefix, defaults={"last_value": 0})
    with transaction.atomic():
        first = identifier_allocate(prefix=prefix)
    rolled_back = []
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back.append(identifier_allocate(prefix=prefix))
        raise RuntimeError("the order could not be created")
    # when
    with transaction.atomic():
        after = identifier_allocate(prefix=prefix)
    # then
    assert (first, rolled_back, after) == ("ORD-000001", ["ORD-000002"], "ORD-000002")
    assert IdentifierCounter.objects.get(prefix=prefix).last_value == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_order_creation_numbers_orders_without_gaps():
    # given
    IdentifierCounter.objects.update_or_create(prefix=PREFIXES["order"], defaults={"last_value": 0})
    account = factories.account()
    barrier = threading.Barrier(4)

    def create() -> str:
        barrier.wait(WAIT)
        return factories.order(account=account).enterprise_id

    # when
    outcomes = _run_in_threads([create] * 4)
    # then
    assert sorted(outcomes) == ["ORD-000001", "ORD-000002", "ORD-000003", "ORD-000004"]
    assert sorted(Order.objects.values_list("enterprise_id", "state")) == [
        (f"ORD-00000{n}", OrderState.RECEIVED) for n in range(1, 5)
    ]
