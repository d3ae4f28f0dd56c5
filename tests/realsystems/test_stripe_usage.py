"""Metered usage through the Stripe connector: Billing Meters, over real HTTP.

localstripe has no meters, prices or meter events, so these calls run against a loopback
server answering as Stripe documents them (tests/realsystems/stripe_meters_server.py), through
the official SDK and Tandem's transport; a lossy proxy in front of it loses answers after the
server did the work. What localstripe does have (the plans catalog) refuses metered prices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.audit import Actor
from core.records import BillingPeriod, LineKind
from masterdata.services import records as md
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.stripe.billing import StripeBilling, meter_event_name
from orchestration.models import OutboundCall
from orchestration.usage_report import UsageReportRetry, usage_report_send
from q2c import services
from q2c.models import Contract, DeliveryState, UsageReport
from q2c.usage import usage_records_ingest, usage_row_parse
from tests import factories
from tests.realsystems.localstripe_server import LocalStripe
from tests.realsystems.lossy_proxy import LossyProxy
from tests.realsystems.stripe_meters_server import API_KEY, StripeMeters

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

METERED_KEY = "prod-api:GBP:0.05:month:metered"


def _point_billing_at(url: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connectors = {name: dict(config) for name, config in settings.TANDEM_CONNECTORS.items()}
    connectors["billing"]["base_url"] = url
    settings.TANDEM_CONNECTORS = connectors
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = {
        **settings.TANDEM_CONNECTOR_IMPLEMENTATIONS,
        "billing": "orchestration.connectors.stripe.billing.StripeBilling",
    }
    settings.CONNECTOR_BILLING_STRIPE_CATALOG = "auto"
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", API_KEY)


@pytest.fixture
def meters(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeMeters]:
    """The loopback Stripe, with Tandem's billing connector pointed at it."""
    server = StripeMeters().start()
    _point_billing_at(server.url, settings, monkeypatch)
    yield server
    server.stop()


@pytest.fixture
def lossy_meters(
    meters: StripeMeters, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LossyProxy]:
    """The loopback Stripe behind a proxy that loses answers when told to."""
    proxy = LossyProxy(upstream=meters.url).start()
    _point_billing_at(proxy.url, settings, monkeypatch)
    yield proxy
    proxy.stop()


def _metered(billing: StripeBilling, key: str = "q2c:1:price:2") -> str:
    return billing.price_ensure(
        lookup_key=METERED_KEY, product_name="API calls (usage)", currency="GBP",
        unit_amount=Decimal("0.05"), interval="month", usage_type="metered",
        idempotency_key=key,
    ).id  # fmt: skip


def _post_to(path: str) -> Callable[[str, str, bytes], bool]:
    def matches(method: str, requested: str, body: bytes) -> bool:
        return method == "POST" and requested == path

    return matches


def _last_month() -> tuple[dt.date, dt.date]:
    first = timezone.localdate().replace(day=1)
    end = first - dt.timedelta(days=1)
    return end.replace(day=1), end


def test_a_metered_price_is_made_once_on_a_meter_of_its_own(meters: StripeMeters):
    # given
    billing = StripeBilling()
    # when
    first = billing.price_ensure(
        lookup_key=METERED_KEY, product_name="API calls (usage)", currency="GBP",
        unit_amount=Decimal("0.05"), interval="month", usage_type="metered",
        idempotency_key="q2c:1:price:2",
    )  # fmt: skip
    again = _metered(billing, key="q2c:2:price:2")
    with pytest.raises(PermanentError) as licensed:
        billing.price_ensure(
            lookup_key=METERED_KEY, product_name="API calls", currency="GBP",
            unit_amount=Decimal("0.05"), interval="month", idempotency_key="q2c:3:price:2",
        )  # fmt: skip
    # then: one meter summing the price's events, one price on it
    assert billing.catalog() == "prices"
    [meter] = meters.meters.values()
    assert (meter["event_name"], meter["default_aggregation"], meter["value_settings"]) == (
        meter_event_name(METERED_KEY), {"formula": "sum"}, {"event_payload_key": "value"},
    )  # fmt: skip
    assert meter["customer_mapping"] == {"type": "by_id", "event_payload_key": "stripe_customer_id"}
    [price] = meters.prices.values()
    assert again == first.id == price["id"]
    assert (price["unit_amount"], price["currency"], price["recurring"]) == (
        5, "gbp", {"interval": "month", "interval_count": 1, "usage_type": "metered",
                   "meter": meter["id"]},
    )  # fmt: skip
    assert first.data["usage_type"] == "metered"
    assert (licensed.value.kind, str(licensed.value)) == (
        "conflict",
        f"billing conflict: price {price['id']} for '{METERED_KEY}' is 0.05 GBP every 1 month "
        "metered, not 0.05 GBP every 1 month",
    )  # fmt: skip
    creates = OutboundCall.objects.filter(operation__in=["meter_create", "price_create"])
    assert list(creates.order_by("pk").values_list("operation", "idempotency_key")) == [
        ("meter_create", "q2c:1:price:2:meter"), ("price_create", "q2c:1:price:2"),
    ]  # fmt: skip


def test_usage_is_a_meter_event_under_its_key_and_puts_the_price_on_the_subscription(
    meters: StripeMeters,
):
    # given
    billing = StripeBilling()
    seats = meters.price_put(lookup_key="seats", unit_amount=3600)
    subscription_id = meters.subscription_put(customer="cus_000042", price_id=seats, quantity=25)
    price_id = _metered(billing)
    start, end = _last_month()
    # when
    found = billing.usage_report_find(key="usage-7-1")
    report = billing.usage_report_create(
        key="usage-7-1", subscription_id=subscription_id, price_id=price_id,
        quantity=Decimal("1500.0000"), period_start=start, period_end=end,
    )  # fmt: skip
    correction = billing.usage_report_create(
        key="usage-7-2", subscription_id=subscription_id, price_id=price_id,
        quantity=Decimal("-200"), period_start=start, period_end=end,
    )  # fmt: skip
    # then: two events on the meter, dated at the period's end, for the subscription's customer
    assert found is None
    end_of_period = int(dt.datetime.combine(end, dt.time(23, 59, 59), dt.UTC).timestamp())
    events = meters.meter_events
    assert [(e["identifier"], e["event_name"], e["timestamp"], e["payload"]) for e in events] == [
        ("usage-7-1", meter_event_name(METERED_KEY), end_of_period,
         {"stripe_customer_id": "cus_000042", "value": "1500"}),
        ("usage-7-2", meter_event_name(METERED_KEY), end_of_period,
         {"stripe_customer_id": "cus_000042", "value": "-200"}),
    ]  # fmt: skip
    assert (report.id, report.data["quantity"], correction.data["quantity"]) == (
        "usage-7-1", "1500", "-200",
    )  # fmt: skip
    # the metered price became an item once, apart from the seats an amendment changes
    items = meters.subscriptions[subscription_id]["items"]["data"]
    assert [(item["price"]["id"], item.get("quantity")) for item in items] == [
        (seats, 25), (price_id, None),
    ]  # fmt: skip
    subscription = billing.subscription_get(subscription_id=subscription_id)
    assert (subscription.data["price_ids"], subscription.data["quantities"]) == ([seats], [25])
    assert subscription.data["metered_price_ids"] == [price_id]
    sent = OutboundCall.objects.filter(operation="usage_report_create").order_by("pk")
    assert list(sent.values_list("path", "idempotency_key")) == [
        ("/v1/billing/meter_events", "usage-7-1"), ("/v1/billing/meter_events", "usage-7-2"),
    ]  # fmt: skip
    item = OutboundCall.objects.get(operation="subscription_item_create")
    assert item.idempotency_key == "usage-7-1:item"


def test_usage_of_a_price_that_is_not_metered_is_refused_before_anything_is_sent(
    meters: StripeMeters,
):
    # given
    billing = StripeBilling()
    seats = meters.price_put(lookup_key="seats", unit_amount=3600)
    subscription_id = meters.subscription_put(customer="cus_000042", price_id=seats, quantity=25)
    start, end = _last_month()
    # when
    with pytest.raises(PermanentError) as refused:
        billing.usage_report_create(
            key="usage-8-1", subscription_id=subscription_id, price_id=seats,
            quantity=Decimal("10"), period_start=start, period_end=end,
        )  # fmt: skip
    # then
    assert (refused.value.kind, str(refused.value)) == (
        "validation", f"billing validation: price {seats} is not a metered price of Tandem's",
    )  # fmt: skip
    assert meters.meter_events == []
    assert "POST /v1/billing/meter_events" not in meters.requests


def test_lost_answers_to_each_new_call_make_one_meter_one_item_and_one_event(
    meters: StripeMeters, lossy_meters: LossyProxy
):
    # given: the answer to the first meter create, item create and meter event is lost
    billing = StripeBilling()
    seats = meters.price_put(lookup_key="seats", unit_amount=3600)
    subscription_id = meters.subscription_put(customer="cus_000042", price_id=seats, quantity=25)
    start, end = _last_month()
    for path in ("/v1/billing/meters", "/v1/subscription_items", "/v1/billing/meter_events"):
        lossy_meters.lose_answers(_post_to(path))
    # when: each call is retried as the engine would, with the same key
    with pytest.raises(RetryableError):
        _metered(billing)
    price_id = _metered(billing)
    report = {"key": "usage-9-1", "subscription_id": subscription_id, "price_id": price_id,
              "quantity": Decimal("750"), "period_start": start, "period_end": end}  # fmt: skip
    with pytest.raises(RetryableError):  # the item's answer is lost
        billing.usage_report_create(**report)  # type: ignore[arg-type]
    with pytest.raises(RetryableError):  # the event's answer is lost
        billing.usage_report_create(**report)  # type: ignore[arg-type]
    sent = billing.usage_report_create(**report)  # type: ignore[arg-type]
    # then: every answer was lost after the server did the work, and it holds one of each
    assert lossy_meters.dropped == [
        "POST /v1/billing/meters", "POST /v1/subscription_items", "POST /v1/billing/meter_events",
    ]  # fmt: skip
    assert len(meters.meters) == 1
    assert [p["id"] for p in meters.prices.values()] == [seats, price_id]
    items = meters.subscriptions[subscription_id]["items"]["data"]
    assert [item["price"]["id"] for item in items] == [seats, price_id]
    assert [(e["identifier"], e["payload"]["value"]) for e in meters.meter_events] == [
        ("usage-9-1", "750")
    ]
    assert sent.id == "usage-9-1"
    events = OutboundCall.objects.filter(operation="usage_report_create").order_by("pk")
    assert list(events.values_list("idempotency_key", "error_class")) == [
        ("usage-9-1", "connection_error"), ("usage-9-1", ""),
    ]  # fmt: skip


def test_the_plans_catalog_refuses_metered_prices_with_what_to_do(localstripe: LocalStripe):
    # given: localstripe, the legacy Plans API only
    billing = StripeBilling()
    # when
    with pytest.raises(PermanentError) as refused:
        _metered(billing)
    # then
    assert refused.value.kind == "validation"
    assert "CONNECTOR_BILLING_STRIPE_CATALOG=prices" in str(refused.value)
    assert localstripe.get("/v1/plans", limit=100)["data"] == []


# --- usage of a contract, end to end through Tandem's usage reporting ----------------------


def _billed_contract(meters: StripeMeters) -> Contract:
    """An active contract with seats and API calls at 0.05 GBP, subscribed in Stripe."""
    actor = Actor.system("worker")
    product = factories.product(
        sku="API-CALLS", name="API calls", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE
    )
    md.product_map(product=product, system="billing", external_id="prod-api", actor=actor,
                   reason="catalog")  # fmt: skip
    usage = factories.line(
        product_code="API-CALLS", kind=LineKind.USAGE, quantity=Decimal("0"),
        unit_price=Decimal("0.05"), billing_period=BillingPeriod.NONE,
    )  # fmt: skip
    end = max(dt.date(2026, 12, 31), timezone.localdate() + dt.timedelta(days=62))
    contract = factories.contract(lines=[factories.line(), usage], end_date=end)
    services.contract_activate(contract=contract, actor=actor, reason="accepted")
    seats = meters.price_put(lookup_key="seats", unit_amount=2500)
    subscription_id = meters.subscription_put(customer="cus_000007", price_id=seats, quantity=10)
    md.external_id_link(record=contract, system="billing", object_type="subscription",
                        external_id=subscription_id, actor=actor, reason="subscribed")  # fmt: skip
    return contract


def _ingest(contract: Contract, usage_id: str, quantity: str, day: dt.date,
            corrects: str = "") -> None:  # fmt: skip
    row = {"usage_id": usage_id, "contract_id": contract.enterprise_id,
           "product_code": "API-CALLS", "quantity": quantity,
           "occurred_at": f"{day.isoformat()}T10:00:00Z"}  # fmt: skip
    if corrects:
        row["corrects"] = corrects
    usage_records_ingest(
        source_system="metering", rows=[usage_row_parse(row)], actor=Actor.system("worker"),
        reason="metering",
    )  # fmt: skip


def test_a_months_usage_reaches_stripe_once_despite_a_lost_answer_and_a_correction_as_a_delta(
    meters: StripeMeters, lossy_meters: LossyProxy
):
    # given: last month's usage, and the answer to its meter event will be lost
    contract = _billed_contract(meters)
    start, _ = _last_month()
    _ingest(contract, "u-1", "1200", start + dt.timedelta(days=1))
    _ingest(contract, "u-2", "300", start + dt.timedelta(days=9))
    report = UsageReport.objects.get()
    lossy_meters.lose_answers(_post_to("/v1/billing/meter_events"))
    # when: the send is retried (as the task would), then a correction arrives
    with pytest.raises(UsageReportRetry):
        usage_report_send(report_id=report.pk)
    first = usage_report_send(report_id=report.pk)
    _ingest(contract, "u-1-fix", "1000", start + dt.timedelta(days=1), corrects="u-1")
    second = usage_report_send(report_id=report.pk)
    # then: Stripe holds 1500 and a -200 delta, once each, on the metered price's meter
    assert (first, second) == ("reported", "reported")
    assert [(e["identifier"], e["payload"]) for e in meters.meter_events] == [
        (f"{report.key}-1", {"stripe_customer_id": "cus_000007", "value": "1500"}),
        (f"{report.key}-2", {"stripe_customer_id": "cus_000007", "value": "-200"}),
    ]  # fmt: skip
    [metered] = [p for p in meters.prices.values() if p["lookup_key"] != "seats"]
    assert (metered["lookup_key"], metered["unit_amount"], metered["recurring"]["usage_type"]) == (
        "prod-api:GBP:0.05:month:metered", 5, "metered",
    )  # fmt: skip
    report.refresh_from_db()
    assert (report.reported_quantity, report.reported_amount) == (Decimal("1300"), Decimal("65"))
    deliveries = report.deliveries.order_by("sequence")
    assert list(deliveries.values_list("state", "attempts", "external_id")) == [
        (DeliveryState.SENT, 2, f"{report.key}-1"), (DeliveryState.SENT, 1, f"{report.key}-2"),
    ]  # fmt: skip
    assert lossy_meters.dropped == ["POST /v1/billing/meter_events"]
