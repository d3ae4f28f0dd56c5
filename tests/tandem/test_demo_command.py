"""``manage.py demo``: the processes it runs and the environment they share."""

from __future__ import annotations

import sys

from celery.app.utils import find_app
from django.conf import settings

from tandem import celery_app
from tandem.management.commands.demo import demo_children, demo_environment

SYSTEMS = ["CRM", "CPQ", "BILLING", "ERP", "TAX", "PAYMENTS"]


def test_the_demo_runs_web_worker_and_the_sandbox_pointed_at_the_web_server():
    # given
    manage = str(settings.BASE_DIR / "manage.py")
    # when
    children = demo_children(port=8481, sandbox_port=8482)
    # then
    assert [child.name for child in children] == ["web", "worker", "sandbox"]
    assert children[0].argv == [sys.executable, manage, "runserver", "127.0.0.1:8481",
                                "--noreload"]  # fmt: skip
    assert children[2].argv == [
        sys.executable, manage, "sandbox", "--port", "8482",
        "--webhook-url", "http://127.0.0.1:8481/webhooks/", "--seed", "1",
        "--state-file", str(settings.VAR_DIR / "sandbox-state.json"),
    ]  # fmt: skip


def test_the_demo_worker_loads_tandems_celery_app_on_every_queue():
    # given
    children = demo_children(port=8481, sandbox_port=8482)
    # when
    worker = children[1].argv
    app = find_app(worker[worker.index("-A") + 1])
    # then
    assert worker[1:6] == ["-m", "celery", "-A", "tandem", "worker"]
    assert app is celery_app
    assert worker[worker.index("-Q") + 1] == ",".join(settings.TANDEM_QUEUES)


def test_the_demo_environment_gives_every_system_the_sandbox_credentials():
    # given
    base = {"PATH": "/usr/bin"}
    # when
    env = demo_environment(base, sandbox_port=8482)
    # then
    expected = {"PATH": "/usr/bin", "CONNECTOR_SANDBOX_URL": "http://127.0.0.1:8482"}
    for system in SYSTEMS:
        expected[f"WEBHOOK_SECRET_{system}"] = f"whsec_sandbox_{system.lower()}"
        expected[f"CONNECTOR_{system}_API_KEY"] = f"sk_sandbox_{system.lower()}"
    assert env == expected
    assert base == {"PATH": "/usr/bin"}


def test_the_demo_environment_keeps_what_is_already_set_directly_or_by_file():
    # given
    base = {
        "CONNECTOR_SANDBOX_URL": "http://localhost:9000",
        "WEBHOOK_SECRET_ERP": "whsec_real_erp",
        "CONNECTOR_BILLING_API_KEY_FILE": "/run/secrets/billing",
    }
    # when
    env = demo_environment(base, sandbox_port=8482)
    # then
    assert (env["CONNECTOR_SANDBOX_URL"], env["WEBHOOK_SECRET_ERP"]) == (
        "http://localhost:9000",
        "whsec_real_erp",
    )
    assert "CONNECTOR_BILLING_API_KEY" not in env
    assert env["CONNECTOR_BILLING_API_KEY_FILE"] == "/run/secrets/billing"
    assert env["WEBHOOK_SECRET_CRM"] == "whsec_sandbox_crm"
    assert len(env) == len(base) + 10  # 13 defaults, 3 of them already given
