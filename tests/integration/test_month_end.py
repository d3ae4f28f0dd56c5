"""The month-end rehearsal against the real rig: quote to cash for four quotes, drift made
behind Tandem's back in the sandbox's billing and ERP, and reconciliation finding exactly it."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from demo.month_end import month_end
from demo.simulate import SimulationError
from orchestration.reconciliation.models import DriftItem
from tests.integration.q2c_env import Rig

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _connectors_at_the_rig(rig: Rig, settings):
    """This process's connectors (reconciliation reads through them) call the rig's sandbox."""
    settings.TANDEM_CONNECTORS = {
        system: {
            "base_url": f"{rig.sandbox.url}/{system}/",
            "credential_env": f"CONNECTOR_{system.upper()}_API_KEY",
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
            "rate_limit_per_second": 50.0,
        }
        for system in ("billing", "erp")
    }


def test_reconciliation_finds_exactly_the_drift_made(rig: Rig):
    # when
    result = month_end(quotes=4, seed=5, sandbox_url=rig.sandbox.url, timeout=120)
    # then every kind of drift was made once, on four different records
    assert sorted((item["type"], item["system"]) for item in result.injected) == [
        ("amount", "erp"),
        ("duplicate_downstream", "billing"),
        ("status", "billing"),
        ("status", "billing"),
    ]
    assert len({item["record"] for item in result.injected}) == 4
    # and reconciliation found exactly it, on books that had no drift before
    assert result.baseline == []
    assert result.found == result.injected
    assert (result.missed, result.unexpected, result.ok) == ([], [], True)
    assert DriftItem.objects.filter(state="open").count() == 4
    # and the sandbox holds what was made
    billing = rig.sandbox.state("billing")["records"]
    assert sum(1 for row in billing["invoices"] if row["status"] == "void") == 1
    assert sum(1 for row in billing["subscriptions"] if row["status"] == "canceled") == 1
    assert len(billing["invoices"]) == 5


def test_the_command_prints_injected_found_and_ok(rig: Rig):
    # given
    out = io.StringIO()
    # when
    call_command(
        "simulate", "--scenario", "month-end", "--quotes", "4", "--seed", "8",
        "--sandbox-url", rig.sandbox.url, "--timeout", "120", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    # then
    report = json.loads(out.getvalue())
    assert report["ok"] is True
    assert len(report["injected"]) == 4
    assert report["found"] == report["injected"]
    assert {run["state"] for run in report["runs"]} == {"succeeded"}


def test_fewer_quotes_than_drift_kinds_is_refused_before_anything_is_sent(rig: Rig):
    # when / then
    with pytest.raises(SimulationError, match="at least 4 quotes"):
        month_end(quotes=3, sandbox_url=rig.sandbox.url)
    with pytest.raises(CommandError, match="at least 4 quotes"):
        call_command(
            "simulate", "--scenario", "month-end", "--quotes", "2",
            "--sandbox-url", rig.sandbox.url, stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    assert rig.sandbox.state("cpq")["counts"]["quotes"] == 0
