"""Fixtures for the tests that talk to real products' servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.realsystems.localstripe_server import API_KEY, LocalStripe, localstripe_start


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
