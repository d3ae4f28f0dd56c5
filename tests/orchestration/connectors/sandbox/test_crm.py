import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import RemoteRecord
from orchestration.connectors.sandbox.crm import SandboxCrm
from tests.orchestration.connectors.helpers import (
    faults_off,
    impatient_transport,
    record_counts,
    responses_lost,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def _create(crm: SandboxCrm) -> RemoteRecord:
    return crm.account_create(
        name="Northwind Traders Ltd",
        domain="northwind.example",
        country="gb",
        currency="GBP",
        idempotency_key="ACC-000001:crm.account:1",
    )


def test_account_create_then_find_by_domain_and_by_name(sandbox):
    # given
    crm = SandboxCrm()
    # when
    created = _create(crm)
    by_domain = crm.account_find(domain="northwind.example")
    by_name = crm.account_find(name="northwind")
    nobody = crm.account_find(name="Contoso")
    # then
    assert (created.status, created.data) == ("created", {})
    assert (
        by_domain
        == by_name
        == [
            RemoteRecord(
                id=created.id,
                data={
                    "name": "Northwind Traders Ltd",
                    "domain": "northwind.example",
                    "country": "GB",
                    "currency": "GBP",
                    "tax_id": "",
                },
            )
        ]
    )
    assert nobody == []


def test_account_find_needs_a_name_or_a_domain(sandbox):
    # when
    with pytest.raises(ValueError) as raised:
        SandboxCrm().account_find()
    # then
    assert str(raised.value) == "account_find needs a name or a domain"


def test_account_committed_with_its_response_lost_is_found_not_made_twice(sandbox):
    # given
    responses_lost(sandbox, "crm")
    # when
    with pytest.raises(RetryableError):
        _create(SandboxCrm(impatient_transport(sandbox, "crm")))
    faults_off(sandbox, "crm")
    found = SandboxCrm().account_find(domain="northwind.example")
    # then
    assert [account.data["name"] for account in found] == ["Northwind Traders Ltd"]
    assert record_counts(sandbox)["crm"] == {"accounts": 1}


def test_an_invalid_country_is_refused_with_the_crm_message(sandbox):
    # when
    with pytest.raises(PermanentError) as raised:
        SandboxCrm().account_create(
            name="Northwind", domain="", country="GBR", currency="GBP", idempotency_key="k-1"
        )
    # then
    assert (raised.value.status, raised.value.message) == (
        400,
        "BillingCountryCode: invalid ISO code 'GBR'",
    )
    assert record_counts(sandbox)["crm"] == {"accounts": 0}
