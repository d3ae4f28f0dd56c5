"""A Salesforce-like CRM: accounts, created, read, updated and searched by name or domain."""

from __future__ import annotations

import re
from typing import Any

from sandbox.systems.base import Call, Reply, Route, route
from sandbox.systems.salesforce import SalesforceSystem, query_result, sf_datetime

ACCOUNT_FIELDS = (
    "Name",
    "Website",
    "Phone",
    "Industry",
    "Tax_Id__c",
    "CurrencyIsoCode",
    "BillingStreet",
    "BillingCity",
    "BillingState",
    "BillingPostalCode",
    "BillingCountryCode",
)


def domain_of(website: str | None) -> str:
    """``https://www.Acme.com/about`` -> ``acme.com``."""
    if not website:
        return ""
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", website.strip().lower()).split("/")[0]
    host = host.split(":")[0]
    return host.removeprefix("www.")


class CrmSystem(SalesforceSystem):
    name = "crm"
    sobject = "Account"
    collections = ("accounts",)

    def routes(self) -> list[Route]:
        return [
            route("GET", "/accounts", self.account_search),
            route("POST", "/accounts", self.account_create),
            route("GET", "/accounts/{id}", self.account_get),
            route("PATCH", "/accounts/{id}", self.account_update),
            route("POST", "/accounts/{id}/merge", self.account_merge),
        ]

    def _values(self, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        fields = self.check(body, ACCOUNT_FIELDS)
        values: dict[str, Any] = {}
        for name in ACCOUNT_FIELDS:
            if name in body:
                values[name] = fields.string(name, required=creating and name == "Name")
        if creating and "Name" not in values:
            raise self.missing("Name")
        if values.get("CurrencyIsoCode") is not None:
            values["CurrencyIsoCode"] = fields.currency("CurrencyIsoCode")
        country = values.get("BillingCountryCode")
        if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
            raise self.invalid(
                "BillingCountryCode", f"BillingCountryCode: invalid ISO code {country!r}"
            )
        return values

    def account_create(self, call: Call) -> Reply:
        values = self._values(call.body, creating=True)
        identifier = call.salesforce_id("001")
        stamp = sf_datetime(call.now)
        account = {
            "attributes": {"type": "Account", "url": f"/crm/accounts/{identifier}"},
            "Id": identifier,
            **{name: None for name in ACCOUNT_FIELDS},
            **values,
            "Domain__c": domain_of(values.get("Website")),
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
        }
        call.collection("accounts")[identifier] = account
        return Reply(201, {"id": identifier, "success": True, "errors": []})

    def account_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("accounts"), call.params["id"]))

    def account_update(self, call: Call) -> Reply:
        account = self.lookup(call.collection("accounts"), call.params["id"])
        values = self._values(call.body, creating=False)
        if "Name" in values and not values["Name"]:
            raise self.missing("Name")
        account.update(values)
        account["Domain__c"] = domain_of(account.get("Website"))
        account["LastModifiedDate"] = sf_datetime(call.now)
        return Reply(204)

    def account_merge(self, call: Call) -> Reply:
        """Merge another account into this one, as Salesforce does: the loser is deleted
        (kept here with ``IsDeleted`` and its ``MasterRecordId``). Repeating it is a no-op."""
        accounts = call.collection("accounts")
        survivor = self.lookup(accounts, call.params["id"])
        fields = self.check(call.body, ("MergedAccountId",))
        loser = self.lookup(accounts, str(fields.string("MergedAccountId", required=True)))
        reply = {"id": survivor["Id"], "mergedId": loser["Id"], "success": True}
        if loser.get("MasterRecordId") == survivor["Id"]:
            return Reply(200, reply)
        if loser["Id"] == survivor["Id"] or loser.get("IsDeleted") or survivor.get("IsDeleted"):
            raise self.invalid("MergedAccountId", "only two different live accounts merge")
        loser["IsDeleted"] = True
        loser["MasterRecordId"] = survivor["Id"]
        loser["LastModifiedDate"] = survivor["LastModifiedDate"] = sf_datetime(call.now)
        return Reply(200, reply)

    def account_search(self, call: Call) -> Reply:
        name = (call.arg("name") or "").strip().lower()
        domain = domain_of(call.arg("domain"))
        tax_id = (call.arg("tax_id") or "").strip()
        found = [
            account
            for account in call.collection("accounts").values()
            if not account.get("IsDeleted")
            and (not name or name in (account["Name"] or "").lower())
            and (not domain or account["Domain__c"] == domain)
            and (not tax_id or account["Tax_Id__c"] == tax_id)
        ]
        return Reply(200, query_result(found))
