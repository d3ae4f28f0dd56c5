"""``CrmApi`` for the sandbox's Salesforce-like CRM (accounts)."""

from __future__ import annotations

from typing import Any

from orchestration.connectors.interfaces import CrmApi, RemoteRecord
from orchestration.connectors.transport import Transport

SYSTEM = "crm"


class SandboxCrm:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)

    def account_find(self, *, name: str = "", domain: str = "") -> list[RemoteRecord]:
        """Accounts whose name contains ``name`` and whose website is on ``domain``.

        At least one of them is required: an unfiltered search would list every account.
        """
        if not name.strip() and not domain.strip():
            raise ValueError("account_find needs a name or a domain")
        params = {key: value for key, value in (("name", name), ("domain", domain)) if value}
        response = self.transport.call(
            operation="account_find", method="GET", path="accounts", params=params
        )
        return [account_record(account) for account in response.body["records"]]

    def account_create(
        self, *, name: str, domain: str, country: str, currency: str, idempotency_key: str
    ) -> RemoteRecord:
        """Create an account; the CRM answers with its id only (``data`` is empty)."""
        body: dict[str, Any] = {
            "Name": name,
            "BillingCountryCode": country.upper(),
            "CurrencyIsoCode": currency.upper(),
        }
        if domain:
            body["Website"] = f"https://{domain}"
        response = self.transport.call(
            operation="account_create",
            method="POST",
            path="accounts",
            json=body,
            idempotency_key=idempotency_key,
        )
        return RemoteRecord(id=str(response.body["id"]), status="created")

    def account_merge(self, *, survivor_id: str, loser_id: str, idempotency_key: str) -> None:
        """Merge the CRM's ``loser_id`` account into ``survivor_id`` (safe to repeat)."""
        self.transport.call(
            operation="account_merge",
            method="POST",
            path=("accounts", survivor_id, "merge"),
            json={"MergedAccountId": loser_id},
            idempotency_key=idempotency_key,
        )


def account_record(body: dict[str, Any]) -> RemoteRecord:
    """A CRM account as a ``RemoteRecord`` (name, domain, country, currency, tax id)."""
    return RemoteRecord(
        id=str(body["Id"]),
        data={
            "name": body.get("Name") or "",
            "domain": body.get("Domain__c") or "",
            "country": body.get("BillingCountryCode") or "",
            "currency": body.get("CurrencyIsoCode") or "",
            "tax_id": body.get("Tax_Id__c") or "",
        },
    )


def _implements(connector: SandboxCrm) -> CrmApi:
    return connector  # mypy checks that SandboxCrm satisfies CrmApi
