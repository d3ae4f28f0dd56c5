"""System checks: a misconfigured connector stops ``manage.py check`` and every server start."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from orchestration.connectors.errors import ConnectorConfigurationError


@register()
def connectors_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from orchestration.connectors.transport import connector_config

    errors: list[CheckMessage] = []
    for system in settings.TANDEM_CONNECTORS:
        try:
            connector_config(system)
        except ConnectorConfigurationError as exc:
            errors.append(Error(str(exc), id="orchestration.E001", obj=f"connector {system}"))
    return errors
