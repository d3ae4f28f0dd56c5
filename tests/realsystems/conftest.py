"""Fixtures for the tests that talk to real products' servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestration.sandbox import SandboxConfig
from tests.integration.conftest import start_worker  # noqa: F401 (a fixture used here)
from tests.integration.q2c_env import Rig, catalog_seed, system_environment
from tests.realsystems.localstripe_server import (
    API_KEY,
    LocalStripe,
    localstripe_start,
    stripe_environment,
)
from tests.sandbox.helpers import SandboxClient, sandbox_start


@pytest.fixture(scope="session")
def localstripe_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """One localstripe server for the whole run, stopped by its PID at the end."""
    server = localstripe_start(log_path=tmp_path_factory.mktemp("localstripe") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def localstripe(
    localstripe_session: LocalStripe, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> LocalStripe:
    """localstripe emptied, with Tandem's billing connector pointed at it (Stripe SDK)."""
    localstripe_session.flush()
    connectors = {name: dict(config) for name, config in settings.TANDEM_CONNECTORS.items()}
    connectors["billing"]["base_url"] = localstripe_session.url
    settings.TANDEM_CONNECTORS = connectors
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = {
        **settings.TANDEM_CONNECTOR_IMPLEMENTATIONS,
        "billing": "orchestration.connectors.stripe_billing.StripeBilling",
    }
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", API_KEY)
    return localstripe_session


@pytest.fixture
def stripe_rig(  # quote to cash with the sandbox for every system but billing: localstripe
    live_server: Any,
    start_worker: Any,  # noqa: F811 (the fixture imported above)
    localstripe: LocalStripe,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Rig]:
    server = sandbox_start(
        SandboxConfig(
            seed=11,
            webhook_url=f"{live_server.url}/webhooks/",
            erp_approval_delay_s=None,  # approved by the test, once the customer has a card
            webhook_retry_base_s=0.2,
            webhook_retry_cap_s=2.0,
        )
    )
    env = system_environment(server.url) | stripe_environment(localstripe)
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the webhook endpoint reads its secrets per request
    settings.WEBHOOK_SIGNATURE_BILLING = "stripe"
    localstripe.webhook_register(f"{live_server.url}/webhooks/billing/")
    catalog_seed()
    start_worker(extra_env=env, concurrency=4)
    client = SandboxClient(server)
    yield Rig(sandbox=client, env=env)
    client.http.close()
    server.stop()
