"""Fixtures: a sandbox on an ephemeral loopback port and a loopback webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import SandboxConfig
from tests.sandbox.helpers import SandboxClient, WebhookReceiver, receiver_start, sandbox_start


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks, server = receiver_start()
    yield hooks
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox_config(receiver: WebhookReceiver) -> SandboxConfig:
    return SandboxConfig(
        seed=7,
        webhook_url=receiver.url,
        erp_approval_delay_s=None,
        webhook_retry_base_s=0.05,
        webhook_retry_cap_s=0.2,
    )


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxClient]:
    server = sandbox_start(sandbox_config)
    client = SandboxClient(server)
    yield client
    client.http.close()
    server.stop()
