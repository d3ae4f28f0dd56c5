from decimal import Decimal

import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import Party, RemoteRecord
from orchestration.connectors.sandbox.billing import SandboxBilling
from orchestration.models import OutboundCall
from tests.orchestration.connectors.helpers import (
    faults_off,
    impatient_transport,
    record_counts,
    responses_lost,
    throttled,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]

NORTHWIND = Party(
    reference="ACC-000001",
    name="Northwind Traders Ltd",
    country="GB",
    currency="GBP",
    email="ap@northwind.example",
    tax_id="GB123456789",
    address_line1="1 High Street",
    city="London",
    postcode="EC1A 1AA",
)


def _seats_price(billing: SandboxBilling, **changes: object) -> RemoteRecord:
    arguments: dict[str, object] = {
        "lookup_key": "PLAT-PRO:gbp:month:36.00",
        "product_name": "Platform Pro seats",
        "currency": "GBP",
        "unit_amount": Decimal("36.00"),
        "interval": "month",
        **changes,
    }
    arguments.setdefault("idempotency_key", f"{arguments['lookup_key']}:billing.price:1")
    return billing.price_ensure(**arguments)  # type: ignore[arg-type]


def test_customer_create_keeps_the_reference_in_metadata_and_is_found_by_it(sandbox):
    # given
    billing = SandboxBilling()
    # when
    created = billing.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:billing:1")
    found = billing.customer_find(reference="ACC-000001")
    missing = billing.customer_find(reference="ACC-000002")
    # then
    assert created.id.startswith("cus_")
    assert created.data == {
        "reference": "ACC-000001",
        "email": "ap@northwind.example",
        "invoice_prefix": created.data["invoice_prefix"],
    }
    assert (found, missing) == (created, None)
    [stored] = sandbox.state("billing")["records"]["customers"]
    assert (stored["name"], stored["metadata"], stored["address"]) == (
        "Northwind Traders Ltd",
        {"tandem_account": "ACC-000001", "tax_id": "GB123456789"},
        {
            "line1": "1 High Street",
            "line2": None,
            "city": "London",
            "state": None,
            "postal_code": "EC1A 1AA",
            "country": "GB",
        },
    )


def test_price_ensure_creates_the_price_in_minor_units_once(sandbox):
    # given
    billing = SandboxBilling()
    # when
    created = _seats_price(billing)
    again = _seats_price(billing, idempotency_key="PLAT-PRO:billing.price:2")
    # then
    assert again == created
    assert created.data == {
        "lookup_key": "PLAT-PRO:gbp:month:36.00",
        "product_id": created.data["product_id"],
        "currency": "GBP",
        "unit_amount": "36.00",
        "interval": "month",
        "interval_count": 1,
    }
    [price] = sandbox.state("billing")["records"]["prices"]
    assert (price["unit_amount"], price["currency"], price["recurring"]) == (
        3600,
        "gbp",
        {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
    )
    assert record_counts(sandbox)["billing"]["products"] == 1
    operations = list(OutboundCall.objects.order_by("pk").values_list("operation", flat=True))
    assert operations == ["price_find", "price_create", "price_find"]


def test_price_ensure_uses_the_currency_minor_units(sandbox):
    # given
    billing = SandboxBilling()
    # when
    yen = _seats_price(
        billing, lookup_key="PLAT-PRO:jpy", currency="JPY", unit_amount=Decimal("5000")
    )
    dinar = _seats_price(
        billing, lookup_key="PLAT-PRO:kwd", currency="KWD", unit_amount=Decimal("12.345")
    )
    quarterly = _seats_price(billing, lookup_key="PLAT-PRO:quarter", interval="quarter")
    # then
    prices = {p["id"]: p for p in sandbox.state("billing")["records"]["prices"]}
    assert (prices[yen.id]["unit_amount"], yen.data["unit_amount"]) == (5000, "5000")
    assert (prices[dinar.id]["unit_amount"], dinar.data["unit_amount"]) == (12345, "12.345")
    assert prices[quarterly.id]["recurring"]["interval_count"] == 3


def test_price_with_more_decimals_than_the_currency_is_refused_before_any_call(sandbox):
    # when
    with pytest.raises(PermanentError) as raised:
        _seats_price(SandboxBilling(), unit_amount=Decimal("36.005"))
    # then
    assert (raised.value.kind, raised.value.message) == (
        "validation",
        "36.005 GBP has more decimals than GBP's 2 minor units",
    )
    assert OutboundCall.objects.count() == 0


def test_price_ensure_refuses_a_lookup_key_held_by_another_amount(sandbox):
    # given
    billing = SandboxBilling()
    existing = _seats_price(billing)
    # when
    with pytest.raises(PermanentError) as raised:
        _seats_price(billing, unit_amount=Decimal("40.00"))
    # then
    assert (raised.value.kind, raised.value.message) == (
        "conflict",
        f"price {existing.id} with lookup_key 'PLAT-PRO:gbp:month:36.00' is "
        "36.00 GBP every 1 month, not 40.00 GBP every 1 month",
    )
    assert record_counts(sandbox)["billing"]["prices"] == 1


def test_subscription_create_find_and_cancel(sandbox):
    # given
    billing = SandboxBilling()
    customer = billing.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:billing:1")
    price = _seats_price(billing)
    # when
    created = billing.subscription_create(
        reference="ORD-000001",
        customer_id=customer.id,
        items=[(price.id, Decimal("25"))],
        idempotency_key="ORD-000001:billing.subscription:1",
        contract_reference="CTR-000001",
    )
    found = billing.subscription_find(reference="ORD-000001")
    by_contract = billing.subscription_find(reference="CTR-000001")
    cancelled = billing.subscription_cancel(
        subscription_id=created.id, idempotency_key="ORD-000001:billing.subscription_cancel:1"
    )
    # then
    assert created.status == "active"
    assert created.data["customer_id"] == customer.id
    assert (created.data["order_reference"], created.data["contract_reference"]) == (
        "ORD-000001",
        "CTR-000001",
    )
    assert created.data["latest_invoice_id"] == found.data["latest_invoice_id"] != ""
    assert found == by_contract == created
    assert (cancelled.id, cancelled.status) == (created.id, "canceled")
    [subscription] = sandbox.state("billing")["records"]["subscriptions"]
    [item] = subscription["items"]["data"]
    assert (item["price"]["id"], item["quantity"]) == (price.id, 25)


def test_subscription_committed_with_its_response_lost_is_found_not_made_twice(sandbox):
    # given
    billing = SandboxBilling()
    customer = billing.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:billing:1")
    price = _seats_price(billing)
    responses_lost(sandbox, "billing")
    # when
    with pytest.raises(RetryableError) as raised:
        SandboxBilling(impatient_transport(sandbox, "billing")).subscription_create(
            reference="ORD-000001",
            customer_id=customer.id,
            items=[(price.id, Decimal("25"))],
            idempotency_key="ORD-000001:billing.subscription:1",
        )
    faults_off(sandbox, "billing")
    found = billing.subscription_find(reference="ORD-000001")
    # then
    assert raised.value.kind == "timeout"
    assert found is not None
    assert (found.status, found.data["order_reference"]) == ("active", "ORD-000001")
    assert record_counts(sandbox)["billing"]["subscriptions"] == 1


def test_customer_committed_with_its_response_lost_is_found_not_made_twice(sandbox):
    # given
    responses_lost(sandbox, "billing")
    # when
    with pytest.raises(RetryableError):
        SandboxBilling(impatient_transport(sandbox, "billing")).customer_create(
            party=NORTHWIND, idempotency_key="ACC-000001:billing:1"
        )
    faults_off(sandbox, "billing")
    found = SandboxBilling().customer_find(reference="ACC-000001")
    # then
    assert found is not None
    assert found.data["reference"] == "ACC-000001"
    assert record_counts(sandbox)["billing"]["customers"] == 1


def test_subscription_on_an_unknown_price_is_refused_with_the_billing_message(sandbox):
    # given
    billing = SandboxBilling()
    customer = billing.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:billing:1")
    # when
    with pytest.raises(PermanentError) as raised:
        billing.subscription_create(
            reference="ORD-000001",
            customer_id=customer.id,
            items=[("price_missing", Decimal("1"))],
            idempotency_key="ORD-000001:billing.subscription:1",
        )
    # then
    assert (raised.value.status, raised.value.kind, raised.value.message) == (
        404,
        "not_found",
        "No such price: 'price_missing'",
    )
    assert record_counts(sandbox)["billing"]["subscriptions"] == 0


def test_throttled_billing_is_retryable_with_its_retry_after(sandbox):
    # given
    throttled(sandbox, "billing", retry_after_s=3)
    # when
    with pytest.raises(RetryableError) as raised:
        SandboxBilling().customer_find(reference="ACC-000001")
    # then
    assert (raised.value.status, raised.value.kind, raised.value.retry_after) == (
        429,
        "rate_limited",
        3,
    )


def test_a_cancellation_at_period_end_marks_the_subscription_and_it_stays_active(sandbox):
    # given
    billing = SandboxBilling()
    customer = billing.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:billing:1")
    created = billing.subscription_create(
        reference="ORD-000001", customer_id=customer.id,
        items=[(_seats_price(billing).id, Decimal("25"))],
        idempotency_key="ORD-000001:billing.subscription:1", contract_reference="CTR-000001",
    )  # fmt: skip
    # when
    marked = billing.subscription_cancel(
        subscription_id=created.id, idempotency_key="CTR-000001:v2:cancel_subscription",
        prorate=False, at_period_end=True,
    )  # fmt: skip
    # then: billed to the period's end, listed as ending for reconciliation
    assert (marked.status, marked.data["cancel_at_period_end"]) == ("active", True)
    [subscription] = sandbox.state("billing")["records"]["subscriptions"]
    assert (subscription["status"], subscription["cancel_at_period_end"]) == ("active", True)
    [listed] = billing.subscriptions_list(updated_since=None).records
    assert (listed.id, listed.status) == (created.id, "canceling")
