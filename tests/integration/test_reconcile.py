"""Finance's 'Reconcile now' runs on a real worker against the sandbox over loopback, and
``manage.py reconcile --json`` prints what it found."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from orchestration.reconciliation.models import ReconciliationRun, RunState
from sandbox import SandboxConfig
from tests.integration.q2c_env import system_environment, wait_until
from tests.sandbox.helpers import SandboxClient, billing_customer, sandbox_start

pytestmark = pytest.mark.integration


def _stray_invoice(sandbox: SandboxClient) -> str:
    """An invoice made in billing behind Tandem's back."""
    customer = billing_customer(sandbox)
    created = sandbox.post(
        "billing", "/invoices",
        {"customer": customer["id"], "currency": "gbp", "metadata": {"tandem_order": "ORD-0042"},
         "lines": [{"amount": 1200, "description": "setup"}]},
    ).json()  # fmt: skip
    assert sandbox.post("billing", f"/invoices/{created['id']}/finalize").status_code == 200
    return str(created["id"])


def test_the_button_runs_a_reconciliation_on_a_worker(
    client, make_user, start_worker, monkeypatch, settings
):
    # given a sandbox with one invoice Tandem never heard of, and a worker pointed at it
    server = sandbox_start(SandboxConfig(seed=5, webhook_url=None, erp_approval_delay_s=None))
    sandbox = SandboxClient(server)
    try:
        stray = _stray_invoice(sandbox)
        env = system_environment(server.url)
        start_worker(extra_env=env)
        client.force_login(make_user("fin", "finance_ops"))
        # when
        response = client.post(reverse("reconciliation-run"), {"system": "billing", "full": "1"})
        # then
        assert response.status_code == 302
        run = wait_until(
            lambda: ReconciliationRun.objects.filter(state=RunState.SUCCEEDED).first(),
            what="the reconciliation run",
        )
        assert (run.system, run.since, run.triggered_by, run.found) == (
            "billing", None, "scheduler", 1,
        )  # fmt: skip
        [item] = run.drift_opened.all()
        assert (item.drift_type, item.remote_ref, item.owner_team) == (
            "missing_in_tandem", stray, "finance_ops",
        )  # fmt: skip
        # when the command runs the same comparison again
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings.TANDEM_CONNECTORS = {
            system: {
                "base_url": f"{server.url}/{system}/",
                "credential_env": f"CONNECTOR_{system.upper()}_API_KEY",
                "connect_timeout": 2.0,
                "read_timeout": 5.0,
                "rate_limit_per_second": 50.0,
            }
            for system in ("billing", "erp")
        }
        out = StringIO()
        call_command("reconcile", "--system", "billing", "--json", stdout=out)
        # then it prints found in the shape simulate's injected takes
        report = json.loads(out.getvalue())
        assert report["found"] == [
            {"type": "missing_in_tandem", "system": "billing", "record": stray}
        ]
        assert [r["state"] for r in report["runs"]] == ["succeeded"]
    finally:
        sandbox.http.close()
        server.stop()
