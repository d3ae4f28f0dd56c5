"""History rows keep a reason of any length without failing the write they explain."""

from __future__ import annotations

import pytest
from django.db import transaction

from core.audit import HISTORY_REASON_MAX, audit_context
from core.transitions import transition_apply
from tests import factories


@pytest.mark.django_db
def test_a_reason_longer_than_the_history_column_is_stored_cut_with_an_ellipsis():
    # given
    order = factories.order()
    long_reason = "exception EXC-12: billing 429 rate_limited: " + "x" * 200
    # when
    with transaction.atomic(), audit_context(actor=factories.actor()):
        transition_apply(order, "hold", actor=factories.actor(), reason=long_reason,
                         reason_text="held while billing recovers")  # fmt: skip
    # then
    row = order.history.latest("history_date")
    assert row.history_change_reason == long_reason[: HISTORY_REASON_MAX - 1] + "…"
    assert len(row.history_change_reason) == HISTORY_REASON_MAX


@pytest.mark.django_db
def test_a_reason_that_fits_is_stored_unchanged():
    # given
    order = factories.order()
    # when
    with transaction.atomic():
        transition_apply(order, "hold", actor=factories.actor(), reason="customer asked",
                         reason_text="customer asked")  # fmt: skip
    # then
    assert order.history.latest("history_date").history_change_reason == "customer asked"
