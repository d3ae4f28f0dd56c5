"""The rehearsal command against the real rig: quotes approved in the sandbox CPQ, processed
by Tandem through its webhook endpoint and a worker, and the books checked afterwards."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from demo.simulate import SimulationError, simulate
from tests.integration.q2c_env import Rig

pytestmark = pytest.mark.integration


def test_simulate_accounts_for_every_quote_and_finds_no_duplicates(rig: Rig):
    # when
    summary = simulate(quotes=4, seed=3, sandbox_url=rig.sandbox.url, timeout=120)
    # then
    assert summary.ok is True
    assert summary.quotes_approved == 4
    assert summary.orders_by_state == {"active": 4}
    assert summary.quotes_without_order == []
    assert summary.open_exceptions_by_category == {}
    assert summary.downstream == {
        "erp_sales_orders": 4,
        "billing_subscriptions": 4,
        "orders_with_duplicates": {},
    }
    assert summary.cycle_time_seconds["p50"] is not None


def test_the_command_prints_the_summary_as_json(rig: Rig):
    # given
    out = io.StringIO()
    # when
    call_command(
        "simulate", "--quotes", "2", "--seed", "9", "--sandbox-url", rig.sandbox.url,
        "--timeout", "120", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    # then
    summary = json.loads(out.getvalue())
    assert (summary["ok"], summary["quotes_approved"], summary["orders_by_state"]) == (
        True, 2, {"active": 2},
    )  # fmt: skip


def test_an_unknown_chaos_profile_is_refused_before_anything_is_sent(rig: Rig):
    # when / then
    with pytest.raises(SimulationError, match="unknown chaos profile 'stormy'"):
        simulate(quotes=1, chaos="stormy", sandbox_url=rig.sandbox.url)
    assert rig.sandbox.state("cpq")["counts"]["quotes"] == 0


def test_the_lifecycle_rehearsal_changes_every_contract_once_and_the_books_agree(rig: Rig):
    # given / when: ten contracts made through the sandbox CPQ, then changed through it
    out = io.StringIO()
    try:
        call_command(
            "simulate", "--scenario", "lifecycle", "--contracts", "10", "--seed", "5",
            "--sandbox-url", rig.sandbox.url, "--timeout", "180", stdout=out,
            stderr=io.StringIO(),
        )  # fmt: skip
    except CommandError as exc:
        raise AssertionError(out.getvalue()) from exc
    # then
    summary = json.loads(out.getvalue())
    assert (summary["scenario"], summary["contracts"], summary["ok"]) == ("lifecycle", 10, True)
    assert summary["duplicates"] == 0 and summary["lost"] == [] and summary["out_of_order"] == []
    assert summary["billing_mismatches"] == [] and summary["unsettled"] == []
    assert summary["changes_sent"] == (
        summary["changes_applied"] + summary["changes_pending"] + summary["changes_parked"]
    )
    assert summary["changes_parked"] == summary["changes_by_kind"].get("stale", 0) // 2
