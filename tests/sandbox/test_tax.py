from __future__ import annotations

GB_ADDRESS = {"line1": "1 High Street", "city": "London", "postalCode": "EC1A 1AA", "country": "GB"}


def _transaction(**fields):
    return {
        "companyCode": "UK01",
        "type": "SalesInvoice",
        "code": "INV-000001",
        "date": "2026-01-05",
        "customerCode": "ACC-000001",
        "currencyCode": "GBP",
        "addresses": {"shipTo": GB_ADDRESS},
        "lines": [
            {"number": "1", "amount": "900.00", "itemCode": "PLAT-PRO"},
            {"number": "2", "amount": "1500.00", "itemCode": "ONBOARD"},
        ],
        "commit": True,
        **fields,
    }


def test_transaction_create_taxes_each_line_at_the_country_rate(sandbox):
    # when
    response = sandbox.post("tax", "/transactions/create", _transaction())

    # then
    assert response.status_code == 201
    transaction = response.json()
    assert transaction["status"] == "Committed"
    assert transaction["totalAmount"] == "2400.00"
    assert transaction["totalTax"] == "480.00"
    assert [line["tax"] for line in transaction["lines"]] == ["180.00", "300.00"]
    assert transaction["lines"][0]["details"][0]["rate"] == "0.2"
    assert transaction["lines"][0]["details"][0]["taxName"] == "VAT"


def test_transaction_rounds_half_up_per_line(sandbox):
    # when
    response = sandbox.post(
        "tax",
        "/transactions/create",
        _transaction(
            type="SalesOrder",
            addresses={"shipTo": {"postalCode": "94105", "country": "US", "region": "CA"}},
            lines=[{"amount": "10.10"}],
        ),
    )

    # then
    assert response.status_code == 201
    assert response.json()["status"] == "Temporary"
    assert response.json()["lines"][0]["tax"] == "0.73"


def test_exempt_transaction_has_no_tax(sandbox):
    # when
    response = sandbox.post("tax", "/transactions/create", _transaction(exemptionNo="EX-1"))

    # then
    assert response.json()["totalTax"] == "0.00"
    assert response.json()["totalExempt"] == "2400.00"


def test_committed_transaction_can_be_read_back_and_not_committed_twice(sandbox):
    # given
    created = sandbox.post("tax", "/transactions/create", _transaction()).json()

    # when
    fetched = sandbox.get("tax", "/companies/UK01/transactions/INV-000001")
    again = sandbox.post("tax", "/transactions/create", _transaction())

    # then
    assert fetched.json() == created
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "TransactionAlreadyCommitted"


def test_known_bad_postcode_is_an_address_validation_error(sandbox):
    # when
    response = sandbox.post(
        "tax", "/addresses/resolve", {"line1": "1 Main St", "postalCode": "00000", "country": "US"}
    )

    # then
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "InvalidAddress",
            "message": "The postal code '00000' is not valid.",
            "target": "IncorrectData",
            "details": [
                {
                    "code": "InvalidAddress",
                    "message": "The postal code '00000' is not valid.",
                    "faultCode": "Client",
                    "severity": "Error",
                    "number": 309,
                    "description": "The address could not be validated.",
                    "refersTo": "postalCode",
                }
            ],
        }
    }


def test_transaction_with_a_bad_postcode_is_refused(sandbox):
    # when
    response = sandbox.post(
        "tax",
        "/transactions/create",
        _transaction(addresses={"shipTo": {**GB_ADDRESS, "postalCode": "000 00"}}),
    )

    # then
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["refersTo"] == "addresses.shipTo.postalCode"
    assert sandbox.state("tax")["counts"] == {"transactions": 0}


def test_address_resolve_normalises_a_good_address(sandbox):
    # when
    response = sandbox.post("tax", "/addresses/resolve", {"address": GB_ADDRESS})

    # then
    assert response.status_code == 200
    [validated] = response.json()["validatedAddresses"]
    assert validated["line1"] == "1 HIGH STREET"
    assert validated["city"] == "LONDON"
    assert validated["postalCode"] == "EC1A 1AA"
    assert response.json()["resolutionQuality"] == "Street"
