import pytest

from orchestration.connectors.errors import PermanentError
from orchestration.connectors.sandbox.cpq import SandboxCpq
from tests.sandbox.helpers import cpq_quote, crm_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def test_quote_get_answers_the_quote_with_its_lines(sandbox):
    # given
    quote = cpq_quote(sandbox, crm_account(sandbox))
    # when
    fetched = SandboxCpq().quote_get(quote_id=quote["Id"])
    # then
    assert fetched.quote_id == quote["Id"]
    assert fetched.data == quote
    lines = fetched.data["SBQQ__LineItems__r"]["records"]  # type: ignore[index]
    assert [line["SBQQ__ProductCode__c"] for line in lines] == ["PLAT-PRO", "ONBOARD"]


def test_an_unknown_quote_is_a_permanent_not_found(sandbox):
    # when
    with pytest.raises(PermanentError) as raised:
        SandboxCpq().quote_get(quote_id="a0x000000000000AAA")
    # then
    assert (raised.value.status, raised.value.kind, raised.value.message) == (
        404,
        "not_found",
        "The requested resource does not exist",
    )


def test_a_malformed_quote_id_is_refused_with_the_cpq_message(sandbox):
    # when
    with pytest.raises(PermanentError) as raised:
        SandboxCpq().quote_get(quote_id="Q-1")
    # then
    assert (raised.value.status, raised.value.message) == (
        400,
        "SBQQ__Quote__c ID: id value of incorrect type: Q-1",
    )
