"""Switching sandbox faults and reading its state, for the connector tests."""

from __future__ import annotations

from orchestration.connectors.transport import ConnectorConfig, Transport
from tests.sandbox.helpers import SandboxClient

# High enough that the shared rate limiter never slows these tests down.
TEST_RATE_LIMIT = 1000.0


def impatient_transport(sandbox: SandboxClient, system: str) -> Transport:
    """A transport to ``system`` that gives up on an answer after 0.3 s."""
    return Transport(
        ConnectorConfig(
            system=system,
            base_url=f"{sandbox.url}/{system}/",
            credential_env=f"CONNECTOR_{system.upper()}_API_KEY",
            connect_timeout=2.0,
            read_timeout=0.3,
            rate_limit_per_second=TEST_RATE_LIMIT,
        )
    )


def responses_lost(sandbox: SandboxClient, system: str) -> None:
    """``system`` commits every change, then holds the connection 1.5 s and drops it."""
    response = sandbox.control(
        "POST",
        f"/faults/{system}",
        {"lose_response_after_commit_rate": 1, "lose_response_hold_ms": 1500},
    )
    assert response.status_code == 200, response.text


def faults_off(sandbox: SandboxClient, system: str) -> None:
    response = sandbox.control("DELETE", f"/faults/{system}")
    assert response.status_code == 200, response.text


def throttled(sandbox: SandboxClient, system: str, retry_after_s: int) -> None:
    """``system`` answers every request with 429 and ``Retry-After: retry_after_s``."""
    response = sandbox.control(
        "POST", f"/faults/{system}", {"throttle_rate": 1, "retry_after_s": retry_after_s}
    )
    assert response.status_code == 200, response.text


def record_counts(sandbox: SandboxClient) -> dict[str, dict[str, int]]:
    return sandbox.control("GET", "/state").json()
