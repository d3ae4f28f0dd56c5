"""A whole quote-to-cash rig on loopback: the sandbox systems, Tandem's web endpoint
(pytest-django's live server) and real Celery workers, with a catalog that maps the
sandbox's products. Used by the end-to-end integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections

from masterdata import services as md
from orchestration.sandbox import SandboxConfig
from orchestration.sandbox.config import default_api_key, default_webhook_secret
from q2c.audit import Actor
from q2c.records import SYSTEMS, BillingPeriod, LineKind
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
