"""Fixtures for tests against real systems on loopback (Tryton, localstripe).

``tryton_server`` (session scope) builds what is missing — the Tryton virtualenv from the
hash-pinned requirements-tryton.txt, the saved database when the pins changed — restores the
saved database into a temporary directory, starts ``trytond`` on a free 127.0.0.1 port and
stops it by its PID at the end. It is never skipped: a fresh machine pays the install
(~30 s) once. ``tryton_erp`` points this process's ERP connector at it; ``tryton_rig`` is the
integration ``rig`` (sandbox for the other systems, live Tandem, a real worker) with Tryton
as the ERP. ``localstripe`` / ``stripe_rig`` do the same for billing with localstripe
(tests/realsystems/localstripe_server.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.connectors.tryton.session import sessions_forget
from sandbox import SandboxConfig
from tests.integration.conftest import start_worker  # noqa: F401 (the fixture, shared)
from tests.integration.q2c_env import Rig, catalog_seed, rig_start, system_environment
from tests.realsystems.localstripe_server import (
    API_KEY,
    LocalStripe,
    localstripe_start,
    stripe_environment,
)
from tests.realsystems.lossy_proxy import LossyProxy
from tests.realsystems.tryton_server import TrytonServer, tryton_start
from tests.sandbox.helpers import SandboxClient, sandbox_start


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    server = tryton_start(Path(tmp_path_factory.mktemp("tryton")))
    yield server
    server.stop()


@pytest.fixture
def rig_tryton_server(tmp_path: Path) -> Iterator[TrytonServer]:
    """A Tryton server of the test's own (~3 s): Tandem's ids restart in every test's
    database, so a shared server would already hold a sale named ORD-000001."""
    server = tryton_start(tmp_path / "tryton")
    yield server
    server.stop()


def _point_erp_at(server: TrytonServer, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    connectors = {**settings.TANDEM_CONNECTORS}
    connectors["erp"] = {**connectors["erp"], "base_url": server.database_url}
    settings.TANDEM_CONNECTORS = connectors
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = {
        **settings.TANDEM_CONNECTOR_IMPLEMENTATIONS,
        "erp": "orchestration.connectors.tryton.erp.TrytonErp",
    }
    sessions_forget()


@pytest.fixture
def tryton_erp(
    tryton_server: TrytonServer,
    transactional_db: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TrytonErp]:
    """Tandem's ERP connector, configured for the test Tryton server."""
    _point_erp_at(tryton_server, settings, monkeypatch)
    yield TrytonErp()
    sessions_forget()


@pytest.fixture
def tryton_rig(
    rig_tryton_server: TrytonServer,
    live_server: Any,
    start_worker: Any,  # noqa: F811 (the integration fixture, imported above)
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Rig]:
    """The quote-to-cash rig with Tryton as the ERP and the sandbox for every other system."""
    server = rig_start(live_server_url=live_server.url)
    env = {**system_environment(server.url), **rig_tryton_server.environment()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _point_erp_at(rig_tryton_server, settings, monkeypatch)
    catalog_seed()
    start_worker(extra_env=env, concurrency=4)
    client = SandboxClient(server)
    yield Rig(sandbox=client, env=env)
    client.http.close()
    server.stop()
    sessions_forget()


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
        "billing": "orchestration.connectors.stripe.billing.StripeBilling",
    }
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", API_KEY)
    return localstripe_session


@pytest.fixture
def stripe_rig(  # quote to cash with the sandbox for every system but billing: localstripe
    live_server: Any,
    start_worker: Any,  # noqa: F811 (the integration fixture, imported above)
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


@dataclass
class LossyRig:
    rig: Rig
    erp_proxy: LossyProxy  # between the worker and Tryton
    billing_proxy: LossyProxy  # between the worker and localstripe


def _tryton_stripe_rig_start(
    *, tryton_server: TrytonServer, live_server: Any, start_worker: Any,  # noqa: F811
    localstripe: LocalStripe, settings: Any, monkeypatch: pytest.MonkeyPatch,
    worker_env: dict[str, str],
) -> tuple[Rig, Any]:  # fmt: skip
    server = rig_start(live_server_url=live_server.url)
    env = (
        system_environment(server.url)
        | tryton_server.environment()
        | stripe_environment(localstripe)
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the webhook endpoint reads its secrets per request
    _point_erp_at(tryton_server, settings, monkeypatch)
    settings.WEBHOOK_SIGNATURE_BILLING = "stripe"
    localstripe.webhook_register(f"{live_server.url}/webhooks/billing/")
    catalog_seed()
    start_worker(extra_env=env | worker_env, concurrency=4)
    return Rig(sandbox=SandboxClient(server), env=env), server


@pytest.fixture
def tryton_stripe_rig(
    rig_tryton_server: TrytonServer,
    live_server: Any,
    start_worker: Any,  # noqa: F811 (the integration fixture, imported above)
    localstripe: LocalStripe,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Rig]:
    """Both real systems at once: Tryton as the ERP, localstripe as billing, the sandbox for
    CPQ, CRM, tax and payments, live Tandem and a real worker."""
    rig, server = _tryton_stripe_rig_start(
        tryton_server=rig_tryton_server, live_server=live_server, start_worker=start_worker,
        localstripe=localstripe, settings=settings, monkeypatch=monkeypatch, worker_env={},
    )  # fmt: skip
    yield rig
    rig.sandbox.http.close()
    server.stop()
    sessions_forget()


@pytest.fixture
def lossy_tryton_stripe_rig(
    rig_tryton_server: TrytonServer,
    live_server: Any,
    start_worker: Any,  # noqa: F811 (the integration fixture, imported above)
    localstripe: LocalStripe,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LossyRig]:
    """``tryton_stripe_rig`` whose worker reaches Tryton and localstripe through proxies that
    lose answers when told to (tests/realsystems/lossy_proxy.py); the test process itself
    talks to both directly."""
    erp_proxy = LossyProxy(upstream=rig_tryton_server.url).start()
    billing_proxy = LossyProxy(upstream=localstripe.url).start()
    rig, server = _tryton_stripe_rig_start(
        tryton_server=rig_tryton_server, live_server=live_server, start_worker=start_worker,
        localstripe=localstripe, settings=settings, monkeypatch=monkeypatch,
        worker_env={
            "CONNECTOR_ERP_BASE_URL": rig_tryton_server.database_url.replace(
                rig_tryton_server.url, erp_proxy.url
            ),
            "CONNECTOR_BILLING_BASE_URL": billing_proxy.url,
            "CIRCUIT_OPEN_SECONDS": "1",
        },
    )  # fmt: skip
    yield LossyRig(rig=rig, erp_proxy=erp_proxy, billing_proxy=billing_proxy)
    rig.sandbox.http.close()
    server.stop()
    erp_proxy.stop()
    billing_proxy.stop()
    sessions_forget()
