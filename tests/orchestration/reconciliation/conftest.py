"""Fixtures: a live sandbox on an ephemeral loopback port, and every connector pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import SandboxConfig
from sandbox.config import SYSTEMS, default_api_key
from tests.orchestration.connectors.helpers import TEST_RATE_LIMIT
from tests.sandbox.helpers import SandboxClient, sandbox_start


@pytest.fixture
def sandbox() -> Iterator[SandboxClient]:
    server = sandbox_start(SandboxConfig(seed=7, webhook_url=None, erp_approval_delay_s=None))
    client = SandboxClient(server)
    yield client
    client.http.close()
    server.stop()


@pytest.fixture
def connectors(settings: Any, sandbox: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Transport.for_system`` reaches the live sandbox for every system."""
    for system in SYSTEMS:
        monkeypatch.setenv(f"CONNECTOR_{system.upper()}_API_KEY", default_api_key(system))
    settings.TANDEM_CONNECTORS = {
        system: {
            "base_url": f"{sandbox.url}/{system}/",
            "credential_env": f"CONNECTOR_{system.upper()}_API_KEY",
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
            "rate_limit_per_second": TEST_RATE_LIMIT,
        }
        for system in SYSTEMS
    }
