"""Reads about the connectors themselves: which implementation and endpoint serve each kind."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from orchestration.connectors.errors import ConnectorConfigurationError
from orchestration.connectors.transport import connector_config
from orchestration.events.signatures import signature_scheme, webhook_secrets


@dataclass(frozen=True)
class ConnectorSetting:
    """One system kind's active configuration. Says whether secrets are set, never them."""

    kind: str
    implementation: str
    base_url: str
    problem: str  # why the configuration cannot be used, or ""
    credential_env: str
    credential_set: bool
    webhook_scheme: str
    webhook_secrets_set: int  # 0, 1, or 2 during a rotation


def connector_settings() -> list[ConnectorSetting]:
    """Every configured system kind, in the order of ``settings.CONNECTOR_SYSTEMS``."""
    rows = []
    implementations: dict[str, str] = settings.TANDEM_CONNECTOR_IMPLEMENTATIONS
    for kind in settings.CONNECTOR_SYSTEMS:
        raw = settings.TANDEM_CONNECTORS.get(kind, {})
        problem = ""
        try:
            config = connector_config(kind)
            credential_set = bool(config.credential())
        except ConnectorConfigurationError as exc:
            problem, credential_set = str(exc), False
        rows.append(
            ConnectorSetting(
                kind=kind,
                implementation=implementations.get(kind, ""),
                base_url=str(raw.get("base_url", "")),
                problem=problem,
                credential_env=str(raw.get("credential_env", "")),
                credential_set=credential_set,
                webhook_scheme=signature_scheme(kind),
                webhook_secrets_set=len(webhook_secrets(kind)),
            )
        )
    return rows
