"""The Stripe billing connector over real HTTP against localstripe (the legacy Plans API)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from orchestration.connectors.errors import (
    ConnectorConfigurationError,
    PermanentError,
    RetryableError,
)
from orchestration.connectors.interfaces import Party
from orchestration.connectors.registry import connector_for
from orchestration.connectors.stripe.billing import StripeBilling, plan_id_for
from orchestration.models import OutboundCall
from tests.realsystems.localstripe_server import LocalStripe
from tests.realsystems.lossy_proxy import LossyProxy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NORTHWIND = Party(
    reference="ACC-000001", name="Northwind Traders Ltd", country="GB", currency="GBP",
    email="ap@northwind.example", tax_id="GB123456789", address_line1="1 High Street",
    city="London", postcode="EC1A 1AA",
)  # fmt: skip
SEATS_KEY = "prod_platpro:GBP:36.00:month"


def _seats(billing: StripeBilling, **changes: object) -> str:
    arguments: dict[str, object] = {
        "lookup_key": SEATS_KEY, "product_name": "Platform Pro seats", "currency": "GBP",
        "unit_amount": Decimal("36.00"), "interval": "month", "idempotency_key": "q2c:1:price:1",
        **changes,
    }  # fmt: skip
    return billing.price_ensure(**arguments).id  # type: ignore[arg-type]


def _subscribed(localstripe: LocalStripe, billing: StripeBilling, quantity: int = 3) -> str:
    customer = billing.customer_create(party=NORTHWIND, idempotency_key="q2c:1:customer")
    localstripe.card_on_file(customer.id)
    plan = _seats(billing)
    return billing.subscription_create(
        reference="ORD-000001", customer_id=customer.id, items=[(plan, Decimal(quantity))],
        idempotency_key="q2c:1:subscription", contract_reference="CTR-000001",
    ).id  # fmt: skip


def test_the_registry_serves_stripe_when_configured_and_it_detects_the_plans_catalog(
    localstripe: LocalStripe,
):
    # when
    billing = connector_for("billing")
    # then
    assert isinstance(billing, StripeBilling)
    assert billing.catalog() == "plans"  # localstripe answers 404 to /v1/prices


def test_customer_upsert_is_found_by_its_reference_and_never_created_twice(localstripe):
    # given
    billing = StripeBilling()
    # when
    created = billing.customer_create(party=NORTHWIND, idempotency_key="q2c:1:upsert_customer")
    again = billing.customer_find(reference="ACC-000001") or billing.customer_create(
        party=NORTHWIND, idempotency_key="q2c:1:upsert_customer"
    )
    missing = billing.customer_find(reference="ACC-000002")
    # then
    assert again == created
    assert missing is None
    [stored] = localstripe.get("/v1/customers", limit=100)["data"]
    assert stored["id"] == created.id
    assert stored["metadata"] == {"tandem_account": "ACC-000001", "tax_id": "GB123456789"}
    assert stored["address"] == {"line1": "1 High Street", "city": "London",
                                 "postal_code": "EC1A 1AA", "country": "GB"}  # fmt: skip
    create = OutboundCall.objects.get(operation="customer_create")
    assert (create.system, create.method, create.path, create.status_code, create.outcome) == (
        "billing", "POST", "/v1/customers", 200, "ok",
    )  # fmt: skip
    assert create.idempotency_key == "q2c:1:upsert_customer"
    assert create.latency_ms >= 1
    assert "ap@northwind.example" not in create.request_body
    assert "ap@northwind.example" not in create.response_body
    assert "sk_test" not in create.request_body + create.response_body


def test_a_plan_is_made_once_per_lookup_key_and_a_different_amount_is_a_conflict(localstripe):
    # given
    billing = StripeBilling()
    # when
    first = _seats(billing)
    second = _seats(billing, idempotency_key="q2c:2:price:1")
    with pytest.raises(PermanentError) as conflict:
        _seats(billing, unit_amount=Decimal("40.00"), idempotency_key="q2c:3:price:1")
    # then
    assert first == second == plan_id_for(SEATS_KEY)
    plan = localstripe.get(f"/v1/plans/{first}")
    assert (plan["amount"], plan["currency"], plan["interval"], plan["interval_count"]) == (
        3600, "gbp", "month", 1,
    )  # fmt: skip
    assert conflict.value.kind == "conflict"
    assert str(conflict.value) == (
        f"billing conflict: plan {first} for {SEATS_KEY!r} is 36.00 GBP every 1 month, "
        "not 40.00 GBP every 1 month"
    )
    assert localstripe.get("/v1/plans", limit=100)["total_count"] == 1
    assert list(
        OutboundCall.objects.filter(operation="plan_create").values_list(
            "idempotency_key", flat=True
        )
    ) == ["q2c:1:price:1"]


def test_a_quarterly_price_is_a_plan_billed_every_three_months(localstripe):
    # when
    plan_id = _seats(StripeBilling(), lookup_key="prod_platpro:GBP:90.00:quarter",
                     unit_amount=Decimal("90.00"), interval="quarter")  # fmt: skip
    # then
    plan = localstripe.get(f"/v1/plans/{plan_id}")
    assert (plan["amount"], plan["interval"], plan["interval_count"]) == (9000, "month", 3)


def test_subscription_create_with_items_is_active_and_found_by_its_order(localstripe):
    # given
    billing = StripeBilling()
    # when
    subscription_id = _subscribed(localstripe, billing, quantity=3)
    found = billing.subscription_find(reference="ORD-000001")
    # then
    assert found is not None and found.id == subscription_id
    assert found.status == "active"
    assert (found.data["order_reference"], found.data["contract_reference"]) == (
        "ORD-000001", "CTR-000001",
    )  # fmt: skip
    stored = localstripe.get(f"/v1/subscriptions/{subscription_id}")
    assert stored["status"] == "active"
    [item] = stored["items"]["data"]
    assert (item["plan"]["id"], item["quantity"]) == (plan_id_for(SEATS_KEY), 3)
    assert billing.subscription_find(reference="ORD-000002") is None
    call = OutboundCall.objects.get(operation="subscription_create")
    assert call.idempotency_key == "q2c:1:subscription"


def test_an_amendment_changes_the_quantity_with_a_proration_and_cancel_credits_unused_time(
    localstripe,
):
    # given
    billing = StripeBilling()
    subscription_id = _subscribed(localstripe, billing, quantity=3)
    plan = plan_id_for(SEATS_KEY)
    # when
    amended = billing.subscription_update(
        subscription_id=subscription_id, items=[(plan, Decimal(5))],
        idempotency_key="amend:1:subscription",
    )  # fmt: skip
    cancelled = billing.subscription_cancel(
        subscription_id=subscription_id, idempotency_key="cancel:1:subscription"
    )
    # then
    assert amended.data["quantities"] == [5]
    assert amended.data["price_ids"] == [plan]
    stored = localstripe.get(f"/v1/subscriptions/{subscription_id}")
    assert stored["items"]["data"][0]["quantity"] == 5
    assert (cancelled.status, stored["status"]) == ("canceled", "canceled")
    customer_id = str(stored["customer"])
    [credit] = billing.invoice_items_pending(customer_id=customer_id)
    assert credit.data == {
        "amount": "-108.00",
        "currency": "GBP",
        "proration": True,
        "description": "Unused time",
        "subscription_id": subscription_id,
    }
    update = OutboundCall.objects.get(operation="subscription_update")
    assert update.idempotency_key == "amend:1:subscription"
    assert '"prorate": "true"' in update.request_body
    cancel = OutboundCall.objects.get(operation="subscription_cancel")
    assert (cancel.method, cancel.idempotency_key) == ("DELETE", "cancel:1:subscription")


def test_invoices_and_their_payment_are_read_back(localstripe):
    # given
    billing = StripeBilling()
    subscription_id = _subscribed(localstripe, billing, quantity=3)
    # when
    [invoice] = billing.invoices_list(subscription_id=subscription_id)
    # then
    assert invoice.status == "paid"
    assert invoice.data["subscription_id"] == subscription_id
    assert (invoice.data["currency"], invoice.data["total"], invoice.data["amount_paid"]) == (
        "GBP", "108.00", "108.00",
    )  # fmt: skip
    assert str(invoice.data["payment_id"]).startswith("ch_")
    assert invoice.data["lines"] == [
        {"description": "Platform Pro seats", "quantity": 3, "amount": "108.00",
         "proration": False}
    ]  # fmt: skip


def test_errors_are_classified_and_recorded(localstripe, monkeypatch):
    # given
    billing = StripeBilling()
    # when
    with pytest.raises(PermanentError) as missing:
        billing.subscription_get(subscription_id="sub_doesnotexist")
    with pytest.raises(PermanentError) as no_card:  # localstripe wants a card on file
        customer = billing.customer_create(party=NORTHWIND, idempotency_key="k:customer")
        billing.subscription_create(
            reference="ORD-000009", customer_id=customer.id,
            items=[(_seats(billing), Decimal(1))], idempotency_key="k:subscription",
        )  # fmt: skip
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", "not-a-secret-key")
    with pytest.raises(PermanentError) as unauthorised:
        StripeBilling().customer_find(reference="ACC-000001")
    # then
    assert (missing.value.kind, missing.value.status) == ("not_found", 404)
    assert (
        missing.value.outbound_call_id == OutboundCall.objects.get(operation="subscription_get").pk
    )
    # localstripe answers 404 here where Stripe would make an incomplete subscription
    assert (no_card.value.kind, no_card.value.status) == ("not_found", 404)
    assert str(no_card.value) == "billing 404 not_found: This customer has no payment method"
    assert (unauthorised.value.kind, unauthorised.value.status) == ("auth", 401)
    recorded = OutboundCall.objects.get(pk=unauthorised.value.outbound_call_id)
    assert (recorded.outcome, recorded.error_class) == ("permanent", "auth")


def test_a_server_that_is_down_is_retryable(localstripe, settings):
    # given
    connectors = {name: dict(config) for name, config in settings.TANDEM_CONNECTORS.items()}
    connectors["billing"]["base_url"] = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.TANDEM_CONNECTORS = connectors
    # when
    with pytest.raises(RetryableError) as down:
        StripeBilling(catalog="plans").customer_find(reference="ACC-000001")
    # then
    assert down.value.kind == "connection_error"
    call = OutboundCall.objects.get()
    assert (call.operation, call.outcome, call.status_code) == ("customer_find", "retryable", None)


def test_without_a_secret_key_the_connector_refuses_to_start(localstripe, monkeypatch):
    # given
    monkeypatch.delenv("CONNECTOR_BILLING_API_KEY")
    # when / then
    with pytest.raises(ConnectorConfigurationError, match="CONNECTOR_BILLING_API_KEY"):
        StripeBilling()
    assert OutboundCall.objects.count() == 0


def test_a_test_payment_method_lets_a_rehearsal_subscribe_without_a_card_step(
    localstripe, settings
):
    # given
    settings.CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD = "pm_card_visa"
    billing = StripeBilling()
    customer = billing.customer_create(party=NORTHWIND, idempotency_key="q2c:1:customer")
    # when
    subscription = billing.subscription_create(
        reference="ORD-000001", customer_id=customer.id, items=[(_seats(billing), Decimal(2))],
        idempotency_key="q2c:1:subscription",
    )  # fmt: skip
    # then
    assert subscription.status == "active"
    stored = localstripe.get(f"/v1/customers/{customer.id}")
    assert stored["invoice_settings"] == {"default_payment_method": "pm_card_visa"}


def test_a_test_payment_method_is_refused_with_a_live_key(localstripe, settings, monkeypatch):
    # given
    settings.CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD = "pm_card_visa"
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", "sk_live_not_here")
    # when / then
    with pytest.raises(ConnectorConfigurationError, match="the key is live"):
        StripeBilling()
    assert OutboundCall.objects.count() == 0


def test_subscriptions_are_counted_per_order_reference_for_a_rehearsals_books(localstripe):
    # given
    billing = StripeBilling()
    _subscribed(localstripe, billing)
    # when
    counts = billing.subscriptions_count(references=["ORD-000001", "ORD-000002"])
    # then
    assert counts == {"ORD-000001": 1, "ORD-000002": 0}


def test_subscriptions_are_listed_per_contract_reference_with_their_items(localstripe):
    # given
    billing = StripeBilling()
    made = _subscribed(localstripe, billing, quantity=4)
    # when
    found = billing.subscriptions_of_contracts(references=["CTR-000001", "CTR-000002"])
    # then
    assert [row["id"] for row in found["CTR-000001"]] == [made]
    assert [item["quantity"] for item in found["CTR-000001"][0]["items"]["data"]] == [4]
    assert found["CTR-000002"] == []


def _through_lossy_proxy(localstripe: LocalStripe, settings: Any) -> LossyProxy:
    proxy = LossyProxy(upstream=localstripe.url).start()
    connectors = {name: dict(config) for name, config in settings.TANDEM_CONNECTORS.items()}
    connectors["billing"]["base_url"] = proxy.url
    settings.TANDEM_CONNECTORS = connectors
    return proxy


def test_a_lost_answer_to_a_cancellation_leaves_one_cancelled_subscription(localstripe, settings):
    # given: the worker reaches localstripe through a proxy that loses the cancel's answer
    subscription_id = _subscribed(localstripe, StripeBilling(catalog="plans"))
    proxy = _through_lossy_proxy(localstripe, settings)
    proxy.lose_answers(lambda method, path, body: method == "DELETE")
    billing = StripeBilling(catalog="plans")
    try:
        # when: the cancel is sent, its answer lost; the retry reads before it cancels
        with pytest.raises(RetryableError):
            billing.subscription_cancel(
                subscription_id=subscription_id, idempotency_key="CTR-000001:v2:cancel"
            )
        current = billing.subscription_get(subscription_id=subscription_id)
    finally:
        proxy.stop()
    # then: localstripe cancelled it once; the step finds it done and sends nothing more
    # sent with the proration credited on a final invoice
    assert proxy.dropped == [
        f"DELETE /v1/subscriptions/{subscription_id}?prorate=true&invoice_now=true"
    ]
    assert current.status == "canceled"
    [stored] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    assert (stored["id"], stored["status"]) == (subscription_id, "canceled")
    cancels = OutboundCall.objects.filter(operation="subscription_cancel")
    assert list(cancels.values_list("idempotency_key", "error_class")) == [
        ("CTR-000001:v2:cancel", "connection_error")
    ]


def test_a_cancellation_at_period_end_is_marked_once_despite_a_lost_answer(localstripe, settings):
    # given
    subscription_id = _subscribed(localstripe, StripeBilling(catalog="plans"))
    proxy = _through_lossy_proxy(localstripe, settings)
    proxy.lose_answers(lambda method, path, body: method == "POST" and b"cancel_at" in body)
    billing = StripeBilling(catalog="plans")
    try:
        # when
        with pytest.raises(RetryableError):
            billing.subscription_cancel(
                subscription_id=subscription_id, idempotency_key="CTR-000001:v2:cancel",
                prorate=False, at_period_end=True,
            )  # fmt: skip
        current = billing.subscription_get(subscription_id=subscription_id)
    finally:
        proxy.stop()
    # then: still billing to the period's end, marked; one subscription, one item
    assert (current.status, current.data["cancel_at_period_end"]) == ("active", True)
    [stored] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    assert (stored["status"], stored["cancel_at_period_end"]) == ("active", True)
    assert [item["quantity"] for item in stored["items"]["data"]] == [3]
    [call] = OutboundCall.objects.filter(operation="subscription_cancel")
    assert (call.method, call.idempotency_key, call.error_class) == (
        "POST", "CTR-000001:v2:cancel", "connection_error",
    )  # fmt: skip
    assert "cancel_at_period_end" in call.request_body
