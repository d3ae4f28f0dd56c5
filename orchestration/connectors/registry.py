"""Which implementation serves each system kind: ``connector_for("erp")``.

The choice is ``settings.TANDEM_CONNECTOR_IMPLEMENTATIONS`` (kind -> dotted class path,
the sandbox classes by default, ``CONNECTOR_<KIND>_IMPLEMENTATION`` per kind). A class is
built with no arguments, so it reaches its system through ``Transport.for_system``.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from django.conf import settings
from django.utils.module_loading import import_string

from orchestration.connectors.errors import ConnectorConfigurationError
from orchestration.connectors.interfaces import (
    BillingApi,
    CpqApi,
    CrmApi,
    ErpApi,
    PaymentsApi,
    TaxApi,
)


@overload
def connector_for(kind: Literal["erp"]) -> ErpApi: ...
@overload
def connector_for(kind: Literal["billing"]) -> BillingApi: ...
@overload
def connector_for(kind: Literal["tax"]) -> TaxApi: ...
@overload
def connector_for(kind: Literal["cpq"]) -> CpqApi: ...
@overload
def connector_for(kind: Literal["crm"]) -> CrmApi: ...
@overload
def connector_for(kind: Literal["payments"]) -> PaymentsApi: ...
@overload
def connector_for(kind: str) -> Any: ...
def connector_for(kind: str) -> Any:
    """A new client for system ``kind``; raise ``ConnectorConfigurationError`` if none is set."""
    implementations: dict[str, str] = settings.TANDEM_CONNECTOR_IMPLEMENTATIONS
    path = implementations.get(kind)
    if not path:
        raise ConnectorConfigurationError(f"no connector implementation for system {kind!r}")
    try:
        implementation = import_string(path)
    except ImportError as exc:
        raise ConnectorConfigurationError(
            f"connector implementation {path!r} for {kind!r} cannot be imported: {exc}"
        ) from exc
    return implementation()
