"""How a connector's failure is classed for the engine: the error class travels with it, so an
exception raised when the retries run out groups by what went wrong, not by "StepFailed"."""

from __future__ import annotations

import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.workflows.errors import StepFailed, StepRetryable
from orchestration.workflows.steps import connector_errors


def test_a_retryable_connector_error_keeps_its_system_and_kind_as_the_error_class():
    # given
    error = RetryableError(
        "billing 503 server_error", system="billing", kind="server_error", outbound_call_id=7
    )
    # when
    with pytest.raises(StepRetryable) as raised, connector_errors():
        raise error
    # then
    assert str(raised.value) == "billing server_error: billing 503 server_error"
    assert raised.value.context == {"outbound_call_id": 7, "error_class": "billing.server_error"}


def test_a_permanent_connector_error_keeps_its_system_and_kind_as_the_error_class():
    # given
    error = PermanentError("erp 422 validation", system="erp", kind="validation")
    # when
    with pytest.raises(StepFailed) as raised, connector_errors():
        raise error
    # then
    assert raised.value.context == {"outbound_call_id": None, "error_class": "erp.validation"}
