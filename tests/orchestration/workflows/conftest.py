"""The live sandbox and the connectors pointed at it, for workflows run against it."""

from tests.orchestration.connectors.conftest import connectors, sandbox  # noqa: F401
