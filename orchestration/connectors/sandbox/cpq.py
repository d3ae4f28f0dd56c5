"""``CpqApi`` for the sandbox's Salesforce-CPQ-like quoting system."""

from __future__ import annotations

from orchestration.connectors.interfaces import CpqApi, CpqQuote
from orchestration.connectors.transport import Transport

SYSTEM = "cpq"


class SandboxCpq:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)

    def quote_get(self, *, quote_id: str) -> CpqQuote:
        """The quote with its lines (``SBQQ__LineItems__r``) as CPQ holds it now.

        An unknown id raises ``PermanentError`` (kind ``not_found``).
        """
        response = self.transport.call(
            operation="quote_get", method="GET", path=("quotes", quote_id)
        )
        return CpqQuote(quote_id=str(response.body["Id"]), data=response.body)


def _implements(connector: SandboxCpq) -> CpqApi:
    return connector  # mypy checks that SandboxCpq satisfies CpqApi
