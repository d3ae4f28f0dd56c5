"""The chaos soak's invariant checker fails when something was lost or duplicated."""

from __future__ import annotations

from collections import Counter

from bench.chaos_invariants import Observed, OrderSeen, invariants_check


def _clean_soak() -> Observed:
    """Two quotes, each one active order with one record of each kind downstream; three
    deliveries answered 2xx, all processed or absorbed."""
    return Observed(
        quotes_in=["Q-1", "Q-2"],
        orders_by_quote={
            "Q-1": [OrderSeen("ORD-1", "ACC-1", "active", active=True, open_exception=False)],
            "Q-2": [OrderSeen("ORD-2", "ACC-2", "active", active=True, open_exception=False)],
        },
        erp_sales_orders=Counter({"ORD-1": 1, "ORD-2": 1}),
        billing_subscriptions=Counter({"ORD-1": 1, "ORD-2": 1}),
        erp_customers=Counter({"ACC-1": 1, "ACC-2": 1}),
        billing_customers=Counter({"ACC-1": 1, "ACC-2": 1}),
        history_rows=14,
        deliveries_2xx=[("cpq", "e1"), ("cpq", "e2"), ("cpq", "e2"), ("erp", "e3")],
        inbound_status={
            ("cpq", "e1"): "processed",
            ("cpq", "e2"): "processed",
            ("erp", "e3"): "duplicate_absorbed",
        },
    )


def test_a_clean_soak_passes_with_its_counts():
    # when
    counts = invariants_check(_clean_soak())
    # then
    assert counts["ok"] is True
    assert (counts["lost"], counts["duplicated"]) == (0, 0)
    assert counts["quotes_in"] == 2
    assert counts["orders_completed"] == 2
    assert counts["erp_sales_orders"] == 2
    assert counts["deliveries_2xx"] == 3
    assert counts["deliveries_became_work"] == 3
    assert counts["examples"] == {}


def test_a_planted_duplicate_downstream_record_fails_the_soak():
    # given
    seen = _clean_soak()
    seen.erp_sales_orders["ORD-2"] += 1
    # when
    counts = invariants_check(seen)
    # then
    assert counts["ok"] is False
    assert counts["duplicated"] == 2  # ORD-2 has two sales orders, so not exactly one
    assert counts["orders_with_several_erp_sales_orders"] == 1
    assert counts["active_orders_missing_downstream"] == 1
    assert counts["lost"] == 0


def test_a_planted_second_order_for_one_quote_fails_the_soak():
    # given
    seen = _clean_soak()
    seen.orders_by_quote["Q-1"].append(
        OrderSeen("ORD-3", "ACC-1", "draft", active=False, open_exception=True)
    )
    # when
    counts = invariants_check(seen)
    # then
    assert counts["ok"] is False
    assert counts["quotes_with_several_orders"] == 1
    assert counts["examples"]["quotes_with_several_orders"] == ["Q-1"]


def test_a_planted_lost_quote_fails_the_soak():
    # given: a third quote was approved in CPQ and never became an order
    seen = _clean_soak()
    seen.quotes_in.append("Q-3")
    # when
    counts = invariants_check(seen)
    # then
    assert counts["ok"] is False
    assert counts["lost"] == 1
    assert counts["quotes_without_order"] == 1
    assert counts["examples"]["quotes_without_order"] == ["Q-3"]
    assert counts["duplicated"] == 0


def test_an_order_stuck_without_an_open_exception_is_lost_but_one_behind_an_exception_is_not():
    # given
    seen = _clean_soak()
    seen.orders_by_quote["Q-1"] = [
        OrderSeen("ORD-1", "ACC-1", "submitted", active=False, open_exception=True)
    ]
    seen.orders_by_quote["Q-2"] = [
        OrderSeen("ORD-2", "ACC-2", "submitted", active=False, open_exception=False)
    ]
    # when
    counts = invariants_check(seen)
    # then
    assert counts["orders_in_visible_exception"] == 1
    assert counts["orders_neither_completed_nor_visible"] == 1
    assert counts["examples"]["orders_neither_completed_nor_visible"] == ["ORD-2"]
    assert (counts["lost"], counts["ok"]) == (1, False)


def test_a_delivery_answered_2xx_that_never_became_work_is_lost_unless_visible():
    # given: e4 was answered 2xx and left unprocessed; e5 is dead, in the dead letters
    seen = _clean_soak()
    seen.deliveries_2xx += [("billing", "e4"), ("billing", "e5"), ("billing", "e6")]
    seen.inbound_status[("billing", "e4")] = "received"
    seen.inbound_status[("billing", "e5")] = "dead"
    # e6 has no row at all
    # when
    counts = invariants_check(seen)
    # then
    assert counts["deliveries_visible_rejected_or_dead"] == 1
    assert counts["deliveries_2xx_lost"] == 2
    assert counts["examples"]["deliveries_2xx_lost"] == ["billing:e4", "billing:e6"]
    assert counts["ok"] is False


def test_a_state_change_without_its_history_row_fails_the_soak():
    # given
    seen = _clean_soak()
    seen.history_missing.append("order 2: active, history submitted")
    # when
    counts = invariants_check(seen)
    # then
    assert counts["history_rows_missing"] == 1
    assert (counts["lost"], counts["ok"]) == (1, False)
