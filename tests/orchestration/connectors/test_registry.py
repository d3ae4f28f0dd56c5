import runpy

import pytest

import tandem.settings
from orchestration.connectors.errors import ConnectorConfigurationError
from orchestration.connectors.registry import connector_for
from orchestration.connectors.sandbox.billing import SandboxBilling
from orchestration.connectors.sandbox.cpq import SandboxCpq
from orchestration.connectors.sandbox.crm import SandboxCrm
from orchestration.connectors.sandbox.erp import SandboxErp
from orchestration.connectors.sandbox.payments import SandboxPayments
from orchestration.connectors.sandbox.tax import SandboxTax


class LedgerErp:
    """Another ERP implementation, chosen by the environment."""


def _settings_reloaded(settings):
    """Settings as a fresh process would read them from the current environment."""
    fresh = runpy.run_path(tandem.settings.__file__)
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = fresh["TANDEM_CONNECTOR_IMPLEMENTATIONS"]


def test_every_kind_defaults_to_its_sandbox_implementation():
    # when
    chosen = {kind: type(connector_for(kind)) for kind in tandem.settings.CONNECTOR_SYSTEMS}
    # then
    assert chosen == {
        "crm": SandboxCrm,
        "cpq": SandboxCpq,
        "billing": SandboxBilling,
        "erp": SandboxErp,
        "tax": SandboxTax,
        "payments": SandboxPayments,
    }


def test_the_environment_overrides_one_kind(settings, monkeypatch):
    # given
    monkeypatch.setenv(
        "CONNECTOR_ERP_IMPLEMENTATION", "tests.orchestration.connectors.test_registry.LedgerErp"
    )
    _settings_reloaded(settings)
    # when
    erp = connector_for("erp")
    billing = connector_for("billing")
    # then
    assert (type(erp), type(billing)) == (LedgerErp, SandboxBilling)


def test_an_implementation_that_cannot_be_imported_is_a_configuration_error(settings, monkeypatch):
    # given
    monkeypatch.setenv(
        "CONNECTOR_TAX_IMPLEMENTATION", "orchestration.connectors.sandbox.tax.Avalara"
    )
    _settings_reloaded(settings)
    # when
    with pytest.raises(ConnectorConfigurationError) as raised:
        connector_for("tax")
    # then
    assert str(raised.value).startswith(
        "connector implementation 'orchestration.connectors.sandbox.tax.Avalara' for 'tax' "
        "cannot be imported: "
    )


def test_an_unknown_kind_is_a_configuration_error():
    # when
    with pytest.raises(ConnectorConfigurationError) as raised:
        connector_for("warehouse")
    # then
    assert str(raised.value) == "no connector implementation for system 'warehouse'"
