import datetime as dt
from decimal import Decimal

import pytest

from orchestration.connectors.errors import PermanentError
from orchestration.connectors.interfaces import RemoteLine, RemoteRecord
from orchestration.connectors.sandbox.tax import SandboxTax
from orchestration.models import OutboundCall
from tests.orchestration.connectors.helpers import record_counts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]

LINES = [
    RemoteLine("PLAT-PRO", Decimal("25"), Decimal("36.00"), "Platform Pro seats"),
    RemoteLine("ONBOARD", Decimal("1"), Decimal("1500.00")),
]


def test_address_validate_answers_the_resolved_address(sandbox):
    # when
    resolved = SandboxTax().address_validate(
        line1="1 High Street",
        city="London",
        postcode="ec1a 1aa",
        country="GB",
        correlation_id="ORD-000001",
    )
    # then
    assert resolved == RemoteRecord(
        id="GB:EC1A 1AA",
        status="Street",
        data={
            "line1": "1 HIGH STREET",
            "city": "LONDON",
            "postcode": "EC1A 1AA",
            "region": "",
            "country": "GB",
            "jurisdictions": ["GB"],
        },
    )
    assert OutboundCall.objects.get().correlation_id == "ORD-000001"


def test_an_invalid_postcode_is_refused_with_the_tax_engine_message(sandbox):
    # when
    with pytest.raises(PermanentError) as raised:
        SandboxTax().address_validate(
            line1="1 Main St", city="Springfield", postcode="00000", country="US", correlation_id=""
        )
    # then
    assert (raised.value.status, raised.value.kind, raised.value.message) == (
        400,
        "validation",
        "The postal code '00000' is not valid.",
    )


def test_tax_quote_is_the_engine_total_for_the_lines_and_stores_nothing(sandbox):
    # when
    tax = SandboxTax().tax_quote(
        reference="ORD-000001",
        country="GB",
        currency="GBP",
        lines=LINES,
        date=dt.date(2026, 1, 5),
        postcode="EC1A 1AA",
    )
    # then
    assert tax == Decimal("480.00")  # 20 % of 900.00 + 1500.00
    assert record_counts(sandbox)["tax"] == {"transactions": 0}


def test_tax_quote_without_a_postcode_is_refused_with_the_tax_engine_message(sandbox):
    # when
    with pytest.raises(PermanentError) as raised:
        SandboxTax().tax_quote(
            reference="ORD-000001",
            country="GB",
            currency="GBP",
            lines=LINES,
            date=dt.date(2026, 1, 5),
        )
    # then
    assert raised.value.message == "The address value was incomplete: postalCode is missing."
