"""Merges racing with each other and with orders, on real connections (one per thread).

On PostgreSQL a merge locks both accounts in pk order (masterdata.locks); an order being
assigned, or a second merge, waits for those locks and then sees the first merge's outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from core.errors import Refused
from masterdata.locks import lock_accounts
from masterdata.models import Account, AccountStatus, MergeRecord, MergeState
from masterdata.services import merges as md
from q2c import services
from q2c.models import Order
from tests import factories
from tests.masterdata import helpers

WAIT = 60  # a safety net so a broken thread fails the test instead of hanging it

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks are PostgreSQL's"
)


def _run_in_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    outcomes: list[Any] = [None] * len(targets)

    def run(index: int, target: Callable[[], Any]) -> None:
        try:
            outcomes[index] = target()
        except BaseException as exc:  # reported to the test, which asserts on it
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_an_order_assigned_to_an_account_being_merged_lands_on_the_survivor(make_user):
    # given
    survivor, loser = factories.account(), factories.account()
    order = services.order_create(
        account=None, legal_entity=loser.legal_entity, currency="GBP", lines=[factories.line()],
        actor=factories.actor(), reason="quote converted before its customer was resolved",
    )  # fmt: skip
    actor = helpers.steward(make_user)
    locked = threading.Event()
    assigning = threading.Event()

    def merge() -> str:
        with transaction.atomic():
            lock_accounts([survivor.pk, loser.pk])  # the merge has begun
            locked.set()
            assigning.wait(WAIT)
            threading.Event().wait(0.5)  # the assignment is now waiting for the lock
            md.merge_request(survivor=survivor, loser=loser, actor=actor, reason="one company")
        return "merged"

    def assign() -> int | None:
        locked.wait(WAIT)
        assigning.set()
        fresh = Order.objects.get(pk=order.pk)
        services.order_assign_account(
            order=fresh, account=loser, actor=factories.actor(), reason="resolved by tax id"
        )
        return Order.objects.get(pk=order.pk).account_id

    # when
    outcomes = _run_in_threads([merge, assign])
    # then
    assert outcomes == ["merged", survivor.pk]
    assert Order.objects.get(pk=order.pk).account_id == survivor.pk
    assert not Order.objects.filter(account=loser).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["same_loser", "chain"])
def test_two_stewards_merging_overlapping_pairs_cannot_corrupt_anything(make_user, second):
    # given: x <- y by one steward; y <- z (a chain) or z <- y (the same loser) by another
    x, y, z = factories.account(), factories.account(), factories.account()
    orders = {acc.pk: factories.order(account=acc).pk for acc in (x, y, z)}
    one, two = helpers.steward(make_user, "one"), helpers.steward(make_user, "two")
    start = threading.Barrier(2)

    def first() -> str:
        start.wait(WAIT)
        md.merge_request(survivor=x, loser=y, actor=one, reason="duplicate")
        return "merged"

    def other() -> str:
        start.wait(WAIT)
        if second == "same_loser":
            md.merge_request(survivor=z, loser=y, actor=two, reason="duplicate")
        else:
            md.merge_request(survivor=y, loser=z, actor=two, reason="duplicate")
        return "merged"

    # when
    outcomes = _run_in_threads([first, other])
    # then: whichever order they ran in, every account is live or merged into a live one,
    # and every order sits on a live account
    accounts = {acc.pk: acc for acc in Account.objects.all()}
    for acc in accounts.values():
        if acc.status == AccountStatus.MERGED:
            assert accounts[acc.merged_into_id].status == AccountStatus.ACTIVE
    for pk in orders.values():
        assert accounts[Order.objects.get(pk=pk).account_id].status == AccountStatus.ACTIVE
    merged = MergeRecord.objects.filter(state=MergeState.MERGED).count()
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert merged + len(refused) == 2
    assert all(o == "merged" or isinstance(o, Refused) for o in outcomes)
    if second == "same_loser":
        assert merged == 1  # y merges exactly once
