"""How a sandbox is configured: start-up settings and the per-system fault settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The systems Tandem talks to; the same codes as core.records.SYSTEMS (kept separate so the
# sandbox runs without Django).
SYSTEMS = ("crm", "cpq", "billing", "erp", "tax", "payments")


def default_api_key(system: str) -> str:
    return f"sk_sandbox_{system}"


def default_webhook_secret(system: str) -> str:
    return f"whsec_sandbox_{system}"


# The header that carries the control token on every ``/_control/`` call but the health check.
CONTROL_TOKEN_HEADER = "X-Sandbox-Control-Token"  # noqa: S105 (a header name)


def default_control_token() -> str:
    return "ctl_sandbox_local"


class ConfigError(ValueError):
    """A setting has a value the sandbox cannot use."""


def webhook_url_check(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL, None for "do not deliver"; else raise."""
    if url is None or url == "":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook URL {url!r} must be an absolute http(s) URL")
    return url if url.endswith("/") else url + "/"


@dataclass
class SandboxConfig:
    seed: int = 1
    api_keys: dict[str, str] = field(
        default_factory=lambda: {system: default_api_key(system) for system in SYSTEMS}
    )
    webhook_secrets: dict[str, str] = field(
        default_factory=lambda: {system: default_webhook_secret(system) for system in SYSTEMS}
    )
    # The shared secret the control API asks for (CONTROL_TOKEN_HEADER): it can reset state,
    # inject faults and approve orders, so it is no more open than the systems' APIs.
    control_token: str = field(default_factory=default_control_token)
    # Events go to f"{webhook_url}{system}/"; None keeps them in the outbox undelivered.
    webhook_url: str | None = "http://127.0.0.1:8000/webhooks/"
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_retry_base_s: float = 0.5
    webhook_retry_cap_s: float = 30.0
    # Seconds between an ERP sales order's creation and its approval; None: only by hand.
    erp_approval_delay_s: float | None = 2.0
    state_file: Path | None = None
    state_flush_interval_s: float = 0.5
    max_body_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        self.webhook_url = webhook_url_check(self.webhook_url)
        for name, mapping in (("api key", self.api_keys), ("webhook secret", self.webhook_secrets)):
            missing = [system for system in SYSTEMS if not mapping.get(system)]
            if missing:
                raise ConfigError(f"no {name} for {', '.join(missing)}")
        if not self.control_token:
            raise ConfigError("no control token")
        if self.erp_approval_delay_s is not None and self.erp_approval_delay_s < 0:
            raise ConfigError("erp_approval_delay_s must be >= 0 or None")
        if self.webhook_max_attempts < 1:
            raise ConfigError("webhook_max_attempts must be >= 1")


@dataclass
class FaultSettings:
    """Faults injected into one system's API and webhooks; all off by default."""

    latency_ms: int = 0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    lose_response_after_commit_rate: float = 0.0
    # How long a lost response holds the connection before closing it without an answer;
    # 0 closes at once (the client sees a connection error instead of a read timeout).
    lose_response_hold_ms: int = 15000
    duplicate_webhook_rate: float = 0.0
    reorder_webhooks: bool = False
    reorder_window_ms: int = 250

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: Any) -> FaultSettings:
        """A copy with ``changes`` (a JSON object) applied; raise ConfigError on a bad value."""
        if not isinstance(changes, dict):
            raise ConfigError("fault settings must be a JSON object")
        known = {f.name: f for f in fields(self)}
        values = asdict(self)
        for name, value in changes.items():
            if name not in known:
                raise ConfigError(f"unknown fault setting {name!r} (known: {', '.join(known)})")
            if name == "reorder_webhooks":
                if not isinstance(value, bool):
                    raise ConfigError("reorder_webhooks must be true or false")
            elif name.endswith("_rate"):
                if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                    raise ConfigError(f"{name} must be a number between 0 and 1")
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise ConfigError(f"{name} must be between 0 and 1, got {value}")
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{name} must be a whole number")
                if value < 0:
                    raise ConfigError(f"{name} must be >= 0, got {value}")
            values[name] = value
        return FaultSettings(**values)
