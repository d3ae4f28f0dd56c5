"""A whole quote-to-cash rig on loopback: the sandbox systems, Tandem's web endpoint
(pytest-django's live server) and real Celery workers, with a catalog that maps the
sandbox's products. Used by the end-to-end integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections

from core.audit import Actor
from core.records import SYSTEMS, BillingPeriod, LineKind
from masterdata.services import records as md
from sandbox import SandboxConfig
from sandbox.config import default_api_key, default_webhook_secret
from tests.sandbox.helpers import SandboxClient, cpq_quote, crm_account, sandbox_start

CATALOG = [
    # sku, name, kind, period, erp item, billing product
    ("PLAT-PRO", "Platform Pro seats", LineKind.RECURRING, BillingPeriod.MONTH, "ITEM-PLAT-PRO",
     "prod_platpro"),
    ("ONBOARD", "Onboarding", LineKind.ONE_TIME, BillingPeriod.NONE, "ITEM-ONBOARD",
     "prod_onboard"),
]  # fmt: skip


def catalog_seed() -> None:
    actor = Actor.system("worker")
    md.legal_entity_create(
        code="UK01", name="Tandem Demo Ltd", country="GB", currency="GBP",
        erp_subsidiary="2", tax_registration="GB999999973", actor=actor, reason="test catalog",
    )  # fmt: skip
    for sku, name, kind, period, erp_item, billing_product in CATALOG:
        product = md.product_create(
            sku=sku, name=name, kind=kind, billing_period=period, actor=actor, reason="catalog"
        )
        md.product_map(product=product, system="erp", external_id=erp_item, actor=actor,
                       reason="catalog")  # fmt: skip
        md.product_map(product=product, system="billing", external_id=billing_product,
                       actor=actor, reason="catalog")  # fmt: skip
        md.product_map(product=product, system="cpq", external_id=sku, actor=actor,
                       reason="catalog")  # fmt: skip


def system_environment(sandbox_url: str) -> dict[str, str]:
    env = {"CONNECTOR_SANDBOX_URL": sandbox_url}
    for system in SYSTEMS:
        env[f"CONNECTOR_{system.upper()}_API_KEY"] = default_api_key(system)
        env[f"WEBHOOK_SECRET_{system.upper()}"] = default_webhook_secret(system)
    return env


@dataclass
class Rig:
    sandbox: SandboxClient
    env: dict[str, str]

    def approve_quote(self, **quote_fields: Any) -> dict[str, Any]:
        """Create a CRM account and a CPQ quote in the sandbox and approve it."""
        account_id = crm_account(self.sandbox)
        quote = cpq_quote(self.sandbox, account_id, **quote_fields)
        response = self.sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")
        assert response.status_code == 200, response.text
        return quote


def rig_start(*, live_server_url: str, erp_approval_delay_s: float = 0.3) -> Any:
    config = SandboxConfig(
        seed=11,
        webhook_url=f"{live_server_url}/webhooks/",
        erp_approval_delay_s=erp_approval_delay_s,
        webhook_retry_base_s=0.2,
        webhook_retry_cap_s=2.0,
    )
    return sandbox_start(config)


def wait_run_completed(subject_id: str) -> Any:
    """The workflow run of ``subject_id`` once completed: its last step's success is committed
    just after the step's own effect (the order active), so a test waits for both."""
    from orchestration.workflows.models import RunState, WorkflowRun

    return wait_until(
        lambda: WorkflowRun.objects.filter(subject_id=subject_id, state=RunState.COMPLETED).first(),
        what=f"the workflow run of {subject_id} to complete",
    )


def wait_until(check: Callable[[], Any], *, timeout: float = 90.0, what: str = "") -> Any:
    """Poll ``check`` (a fresh read each time) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        connections.close_all()  # read what other processes committed
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check.__name__}")
        time.sleep(0.3)


# --- helpers for the fault tests ----------------------------------------------------------


def customer_fields(number: int) -> dict[str, str]:
    """A distinct CRM customer per number, so each quote resolves to its own account."""
    return {
        "Name": f"Customer {number} Trading Ltd",
        "Website": f"https://www.customer{number}.example",
        "Tax_Id__c": f"GB{100000000 + number}",
    }


def rig_faults(rig: Rig, system: str, **settings: Any) -> dict[str, Any]:
    response = rig.sandbox.control("POST", f"/faults/{system}", settings)
    assert response.status_code == 200, response.text
    return response.json()


def rig_faults_clear(rig: Rig, system: str) -> None:
    response = rig.sandbox.control("DELETE", f"/faults/{system}")
    assert response.status_code == 200, response.text


def rig_settings(rig: Rig, **settings: Any) -> dict[str, Any]:
    response = rig.sandbox.control("POST", "/settings", settings)
    assert response.status_code == 200, response.text
    return response.json()


def rig_records(rig: Rig, system: str, collection: str) -> list[dict[str, Any]]:
    return list(rig.sandbox.state(system)["records"][collection])


def approve_quotes(rig: Rig, count: int, *, first: int = 1) -> list[str]:
    """Approve ``count`` quotes of distinct customers; returns their CPQ quote ids."""
    ids = []
    for number in range(first, first + count):
        account_id = crm_account(rig.sandbox, **customer_fields(number))
        quote = cpq_quote(rig.sandbox, account_id)
        response = rig.sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")
        assert response.status_code == 200, response.text
        ids.append(quote["Id"])
    return ids
