"""Reads for the console: per-state counts stop at a limit, like the lists they link to."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from q2c import selectors, services
from q2c.models import Order
from tests import factories


@pytest.mark.django_db
def test_counts_by_state_stops_each_count_at_the_limit_in_one_query():
    # given
    account = factories.account()
    for _ in range(3):
        factories.order(account=account)
    held = factories.order(account=account)
    services.order_hold(order=held, actor=factories.actor(), reason="credit check")
    # when
    with CaptureQueriesContext(connection) as captured:
        rows = selectors.counts_by_state(Order, limit=2)
    # then
    assert len(captured) == 1
    assert [(r["state"], r["count"], r["capped"]) for r in rows] == [
        ("received", 2, True), ("validated", 0, False), ("submitted_to_erp", 0, False),
        ("accepted", 0, False), ("provisioning", 0, False), ("active", 0, False),
        ("fulfilled", 0, False), ("on_hold", 1, False), ("rejected", 0, False),
        ("cancelled", 0, False),
    ]  # fmt: skip


@pytest.mark.django_db
def test_counts_by_state_at_the_limit_is_exact_and_not_capped():
    # given
    account = factories.account()
    for _ in range(2):
        factories.order(account=account)
    # when
    rows = selectors.counts_by_state(Order, limit=2)
    # then
    assert (rows[0]["state"], rows[0]["count"], rows[0]["capped"]) == ("received", 2, False)
