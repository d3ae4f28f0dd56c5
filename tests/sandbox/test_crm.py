from __future__ import annotations

from tests.sandbox.helpers import crm_account


def test_account_create_then_get_returns_the_salesforce_record(sandbox):
    # given
    account_id = crm_account(sandbox)

    # when
    response = sandbox.get("crm", f"/accounts/{account_id}")

    # then
    assert response.status_code == 200
    account = response.json()
    assert len(account_id) == 18
    assert account_id.startswith("0015e")
    assert account["Id"] == account_id
    assert account["attributes"] == {"type": "Account", "url": f"/crm/accounts/{account_id}"}
    assert account["Name"] == "Northwind Traders Ltd"
    assert account["Domain__c"] == "northwind.example"
    assert account["BillingCountryCode"] == "GB"


def test_account_get_accepts_the_15_character_id(sandbox):
    # given
    account_id = crm_account(sandbox)

    # when
    response = sandbox.get("crm", f"/accounts/{account_id[:15]}")

    # then
    assert response.status_code == 200
    assert response.json()["Id"] == account_id


def test_account_search_by_name_and_by_domain(sandbox):
    # given
    northwind = crm_account(sandbox)
    crm_account(sandbox, Name="Contoso GmbH", Website="contoso.example", BillingCountryCode="DE")

    # when
    by_name = sandbox.get("crm", "/accounts", params={"name": "northwind"}).json()
    by_domain = sandbox.get("crm", "/accounts", params={"domain": "https://northwind.example/x"})

    # then
    assert by_name["totalSize"] == 1
    assert by_name["done"] is True
    assert [record["Id"] for record in by_name["records"]] == [northwind]
    assert [record["Id"] for record in by_domain.json()["records"]] == [northwind]


def test_account_create_without_name_is_refused_like_salesforce(sandbox):
    # when
    response = sandbox.post("crm", "/accounts", {"Website": "acme.example"})

    # then
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]
    assert sandbox.state("crm")["counts"] == {"accounts": 0}


def test_account_create_with_unknown_field_is_refused(sandbox):
    # when
    response = sandbox.post("crm", "/accounts", {"Name": "Acme", "Colour__c": "red"})

    # then
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_FIELD"
    assert response.json()[0]["message"] == (
        "No such column 'Colour__c' on sobject of type Account"
    )


def test_account_update_changes_fields_and_domain(sandbox):
    # given
    account_id = crm_account(sandbox)

    # when
    response = sandbox.call(
        "PATCH", "crm", f"/accounts/{account_id}", json={"Website": "https://nwt.example"}
    )

    # then
    assert response.status_code == 204
    account = sandbox.get("crm", f"/accounts/{account_id}").json()
    assert account["Website"] == "https://nwt.example"
    assert account["Domain__c"] == "nwt.example"


def test_malformed_and_unknown_ids(sandbox):
    # when
    malformed = sandbox.get("crm", "/accounts/123")
    unknown = sandbox.get("crm", "/accounts/001000000000000AAA")

    # then
    assert malformed.status_code == 400
    assert malformed.json()[0]["errorCode"] == "MALFORMED_ID"
    assert unknown.status_code == 404
    assert unknown.json() == [
        {
            "message": "The requested resource does not exist",
            "errorCode": "NOT_FOUND",
            "fields": [],
        }
    ]
