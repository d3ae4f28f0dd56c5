from __future__ import annotations

from tests.sandbox.helpers import cpq_quote, crm_account


def test_quote_create_computes_lines_and_totals(sandbox):
    # given
    account_id = crm_account(sandbox)

    # when
    quote = cpq_quote(sandbox, account_id)

    # then
    assert len(quote["Id"]) == 18
    assert quote["Id"].startswith("a0x5e")
    assert quote["Name"] == "Q-00001"
    assert quote["SBQQ__Status__c"] == "Draft"
    assert quote["SBQQ__Account__c"] == account_id
    assert quote["SBQQ__EndDate__c"] == "2026-12-31"
    assert quote["SBQQ__NetAmount__c"] == "2400.00"
    recurring, one_time = quote["SBQQ__LineItems__r"]["records"]
    assert recurring["SBQQ__Quote__c"] == quote["Id"]
    assert recurring["SBQQ__Product__c"].startswith("01t5e")
    assert recurring["SBQQ__Product__r"] == {
        "ProductCode": "PLAT-PRO",
        "Name": "Platform Pro seats",
    }
    assert (
        recurring["SBQQ__Quantity__c"],
        recurring["SBQQ__ListPrice__c"],
        recurring["SBQQ__Discount__c"],
        recurring["SBQQ__NetPrice__c"],
        recurring["SBQQ__NetTotal__c"],
    ) == ("25", "40.00", "10", "36.00", "900.00")
    assert recurring["SBQQ__SubscriptionTerm__c"] == 12
    assert recurring["SBQQ__StartDate__c"] == "2026-01-01"
    assert one_time["SBQQ__ChargeType__c"] == "One-Time"
    assert one_time["SBQQ__BillingFrequency__c"] is None
    assert one_time["SBQQ__ListPrice__c"] == "1500.00"
    assert one_time["SBQQ__StartDate__c"] is None


def test_quote_get_returns_the_stored_quote(sandbox):
    # given
    quote = cpq_quote(sandbox, crm_account(sandbox))

    # when
    response = sandbox.get("cpq", f"/quotes/{quote['Id']}")

    # then
    assert response.status_code == 200
    assert response.json() == quote


def test_quote_approve_sets_status_and_emits_quote_approved(sandbox, receiver):
    # given
    quote = cpq_quote(sandbox, crm_account(sandbox))

    # when
    response = sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")

    # then
    assert response.status_code == 200
    assert response.json()["SBQQ__Status__c"] == "Approved"
    [delivery] = receiver.wait_for(1)
    assert delivery.path == "/webhooks/cpq/"
    assert delivery.payload["event_type"] == "quote.approved"
    assert delivery.payload["data"]["cpq_quote_id"] == quote["Id"]
    assert delivery.payload["data"]["total_amount"] == "2400.00"


def test_quote_approve_twice_is_refused(sandbox):
    # given
    quote = cpq_quote(sandbox, crm_account(sandbox))
    sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")

    # when
    response = sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")

    # then
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "Quote Q-00001 is Approved and cannot be approved.",
            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "fields": ["SBQQ__Status__c"],
        }
    ]


def test_quote_for_an_unknown_account_is_refused(sandbox):
    # when
    response = sandbox.post(
        "cpq",
        "/quotes",
        {
            "SBQQ__Account__c": "0015e000000000AAAA",
            "CurrencyIsoCode": "USD",
            "SBQQ__StartDate__c": "2026-01-01",
            "SBQQ__SubscriptionTerm__c": 12,
            "lines": [],
        },
    )

    # then
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert sandbox.state("cpq")["counts"] == {"quotes": 0, "products": 0, "contract_changes": 0}


def test_quote_line_with_a_non_numeric_quantity_is_refused_with_its_path(sandbox):
    # given
    account_id = crm_account(sandbox)
    bad_line = {
        "ProductCode": "X",
        "SBQQ__ChargeType__c": "Usage",
        "SBQQ__Quantity__c": "many",
        "SBQQ__ListPrice__c": "1.00",
    }

    # when
    response = sandbox.post(
        "cpq",
        "/quotes",
        {
            "SBQQ__Account__c": account_id,
            "CurrencyIsoCode": "USD",
            "SBQQ__StartDate__c": "2026-01-01",
            "SBQQ__SubscriptionTerm__c": 12,
            "lines": [bad_line],
        },
    )

    # then
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "lines[0].SBQQ__Quantity__c: 'many' is not a number",
            "errorCode": "FIELD_INTEGRITY_EXCEPTION",
            "fields": ["lines[0].SBQQ__Quantity__c"],
        }
    ]


def test_quote_list_filters_by_status(sandbox):
    # given
    account_id = crm_account(sandbox)
    approved = cpq_quote(sandbox, account_id)
    cpq_quote(sandbox, account_id)
    sandbox.post("cpq", f"/quotes/{approved['Id']}/approve")

    # when
    response = sandbox.get("cpq", "/quotes", params={"status": "Approved"})

    # then
    assert response.status_code == 200
    assert [quote["Id"] for quote in response.json()["records"]] == [approved["Id"]]
