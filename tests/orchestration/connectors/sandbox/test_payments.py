from decimal import Decimal

import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.sandbox.payments import SandboxPayments
from tests.orchestration.connectors.helpers import (
    faults_off,
    impatient_transport,
    record_counts,
    responses_lost,
    throttled,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def test_payment_collect_charges_minor_units_and_is_found_by_invoice(sandbox):
    # given
    payments = SandboxPayments()
    # when
    collected = payments.payment_collect(
        invoice_ref="INV-000001",
        amount=Decimal("2400.50"),
        currency="GBP",
        idempotency_key="INV-000001:payments.collect:1",
    )
    found = payments.payment_find(invoice_ref="INV-000001")
    none = payments.payment_find(invoice_ref="INV-000002")
    # then
    assert collected.id.startswith("pi_")
    assert (collected.status, collected.data["invoice_ref"]) == ("succeeded", "INV-000001")
    assert (collected.data["amount"], collected.data["amount_received"]) == ("2400.50", "2400.50")
    assert collected.data["currency"] == "GBP"
    assert (found, none) == (collected, None)
    [intent] = sandbox.state("payments")["records"]["payment_intents"]
    assert (intent["amount"], intent["currency"]) == (240050, "gbp")


def test_a_declined_card_is_permanent_with_the_processor_message(sandbox):
    # given
    payments = SandboxPayments(payment_method="pm_card_chargeDeclined")
    # when
    with pytest.raises(PermanentError) as raised:
        payments.payment_collect(
            invoice_ref="INV-000001",
            amount=Decimal("100.00"),
            currency="EUR",
            idempotency_key="INV-000001:payments.collect:1",
        )
    found = payments.payment_find(invoice_ref="INV-000001")
    # then
    assert (raised.value.status, raised.value.message) == (402, "Your card was declined.")
    assert found is not None
    assert found.status == "requires_payment_method"


def test_payment_committed_with_its_response_lost_is_found_not_taken_twice(sandbox):
    # given
    responses_lost(sandbox, "payments")
    # when
    with pytest.raises(RetryableError):
        SandboxPayments(impatient_transport(sandbox, "payments")).payment_collect(
            invoice_ref="INV-000001",
            amount=Decimal("99.00"),
            currency="USD",
            idempotency_key="INV-000001:payments.collect:1",
        )
    faults_off(sandbox, "payments")
    found = SandboxPayments().payment_find(invoice_ref="INV-000001")
    # then
    assert found is not None
    assert (found.status, found.data["amount_received"]) == ("succeeded", "99.00")
    assert record_counts(sandbox)["payments"] == {"payment_intents": 1}


def test_throttled_payments_is_retryable_with_its_retry_after(sandbox):
    # given
    throttled(sandbox, "payments", retry_after_s=2)
    # when
    with pytest.raises(RetryableError) as raised:
        SandboxPayments().payment_collect(
            invoice_ref="INV-000001",
            amount=Decimal("99.00"),
            currency="USD",
            idempotency_key="INV-000001:payments.collect:1",
        )
    # then
    assert (raised.value.status, raised.value.retry_after) == (429, 2)
    assert record_counts(sandbox)["payments"] == {"payment_intents": 0}
