from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from core.audit import Actor
from q2c import services
from q2c.models import Order
from tests import factories

DAY1 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DAY3 = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)


@dataclass
class Story:
    """One order's life: created by the worker on day 1, held by alice on day 2 and released
    by bob on day 3. ``rows`` are its history rows, oldest first."""

    order: Order
    alice: Any
    bob: Any
    rows: list[Any]


@pytest.fixture
def story(make_user: Any) -> Story:
    alice = make_user("alice", "sales_ops")
    bob = make_user("bob", "sales_ops")
    order = factories.order()
    services.order_hold(order=order, actor=Actor.person(alice), reason="credit check")
    services.order_release(order=order, actor=Actor.person(bob), reason="credit approved")
    history = order.history.model
    rows = list(history.objects.filter(id=order.pk).order_by("history_id"))
    # Test setup only: spread the rows over three days so date filters have something to cut.
    dates = [DAY1, DAY1 + dt.timedelta(minutes=1), DAY2, DAY3]
    assert len(rows) == len(dates)
    for row, when in zip(rows, dates, strict=True):
        history.objects.filter(history_id=row.history_id).update(history_date=when)
    rows = list(history.objects.filter(id=order.pk).order_by("history_id"))
    return Story(order=order, alice=alice, bob=bob, rows=rows)
