"""Usage periods reported to the sandbox billing over real HTTP: once per key, a lost answer
never reports twice, a late correction reaches billing as a delta."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from core.audit import Actor
from core.records import BillingPeriod, LineKind
from masterdata.services import records as md
from orchestration.connectors.interfaces import Party
from orchestration.connectors.sandbox.billing import SandboxBilling
from orchestration.usage_report import UsageReportRetry, usage_report_send, usage_reports_sweep
from q2c import services
from q2c.models import Contract, DeliveryState, UsageReport, UsageReportState
from q2c.usage import usage_records_ingest, usage_row_parse
from tests import factories
from tests.orchestration.connectors.helpers import faults_off, responses_lost

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def _usage_line(price: str) -> services.LineInput:
    return factories.line(
        product_code="API-CALLS", kind=LineKind.USAGE, quantity=Decimal("0"),
        unit_price=Decimal(price), billing_period=BillingPeriod.NONE,
    )  # fmt: skip


def _billed_contract() -> Contract:
    """An active contract with a usage line at 0.05 GBP, subscribed in billing."""
    actor = Actor.system("worker")
    product = factories.product(
        sku="API-CALLS", name="API calls", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE
    )
    md.product_map(product=product, system="billing", external_id="prod-api", actor=actor,
                   reason="catalog")  # fmt: skip
    end = max(dt.date(2026, 12, 31), dt.date.today() + dt.timedelta(days=62))
    contract = factories.contract(lines=[factories.line(), _usage_line("0.05")], end_date=end)
    services.contract_activate(contract=contract, actor=actor, reason="accepted")
    billing = SandboxBilling()
    customer = billing.customer_create(
        party=Party(reference=contract.account.enterprise_id, name="Customer", country="GB",
                    currency="GBP"),
        idempotency_key="cus-1",
    )  # fmt: skip
    seats = billing.price_ensure(
        lookup_key="seats:GBP:25.00:month", product_name="Seats", currency="GBP",
        unit_amount=Decimal("25.00"), interval="month", idempotency_key="price-1",
    )  # fmt: skip
    subscription = billing.subscription_create(
        reference=contract.enterprise_id, customer_id=customer.id,
        items=[(seats.id, Decimal("10"))], idempotency_key="sub-1",
    )  # fmt: skip
    md.external_id_link(record=contract, system="billing", object_type="subscription",
                        external_id=subscription.id, actor=actor, reason="subscribed")  # fmt: skip
    return contract


def _ingest(contract: Contract, *records: tuple[str, str, str, str]) -> Any:
    rows = [
        usage_row_parse(
            {"usage_id": usage_id, "contract_id": contract.enterprise_id,
             "product_code": "API-CALLS", "quantity": quantity, "occurred_at": when,
             **({"corrects": corrects} if corrects else {})}
        )
        for usage_id, quantity, when, corrects in records
    ]  # fmt: skip
    return usage_records_ingest(
        source_system="metering", rows=rows, actor=Actor.system("worker"), reason="metering"
    )


def _billed_usage(sandbox: Any) -> list[tuple[str, str, str, str, str]]:
    records = sandbox.state("billing")["records"]["usage_records"]
    return sorted(
        (r["identifier"], r["quantity"], r["period"]["start"], r["period"]["end"], r["price"])
        for r in records
    )


def test_an_ended_month_is_reported_once_at_a_metered_price(sandbox):
    # given
    contract = _billed_contract()
    _ingest(contract, ("u-1", "1200", "2026-03-02T10:00:00Z", ""),
            ("u-2", "300", "2026-03-20T10:00:00Z", ""))  # fmt: skip
    report = UsageReport.objects.get()
    # when
    state = usage_report_send(report_id=report.pk)
    again = usage_report_send(report_id=report.pk)
    # then
    assert (state, again) == ("reported", "reported")
    [(key, quantity, start, end, price_id)] = _billed_usage(sandbox)
    assert (key, quantity, start, end) == (f"usage-{report.pk}-1", "1500", "2026-03-01",
                                           "2026-03-31")  # fmt: skip
    price = sandbox.state("billing")["records"]["prices"]
    metered = next(p for p in price if p["id"] == price_id)
    assert (metered["unit_amount"], metered["recurring"]["usage_type"], metered["lookup_key"]) == (
        5, "metered", "prod-api:GBP:0.05:month:metered",
    )  # fmt: skip
    report.refresh_from_db()
    assert (report.reported_quantity, report.reported_amount) == (Decimal("1500"), Decimal("75"))


def test_a_lost_answer_is_sent_again_under_the_same_key_and_billing_keeps_one(sandbox):
    # given
    contract = _billed_contract()
    _ingest(contract, ("u-1", "1000", "2026-04-02T10:00:00Z", ""))
    report = UsageReport.objects.get()
    responses_lost(sandbox, "billing")
    # when: billing stores the report, the answer never comes back
    with pytest.raises(UsageReportRetry):
        usage_report_send(report_id=report.pk)
    report.refresh_from_db()
    [pending] = report.deliveries.all()
    assert (report.state, report.reported_quantity, pending.state, pending.attempts) == (
        UsageReportState.PENDING, Decimal("0"), DeliveryState.PENDING, 1,
    )  # fmt: skip
    faults_off(sandbox, "billing")
    state = usage_report_send(report_id=report.pk)
    # then
    assert state == "reported"
    assert _billed_usage(sandbox)[0][:2] == (f"usage-{report.pk}-1", "1000")
    assert len(_billed_usage(sandbox)) == 1
    pending.refresh_from_db()
    assert (pending.state, pending.attempts) == (DeliveryState.SENT, 2)


def test_a_late_correction_reaches_billing_as_a_delta_once(sandbox):
    # given: March reported at 1500
    contract = _billed_contract()
    _ingest(contract, ("u-1", "1200", "2026-03-02T10:00:00Z", ""),
            ("u-2", "300", "2026-03-20T10:00:00Z", ""))  # fmt: skip
    report = UsageReport.objects.get()
    usage_report_send(report_id=report.pk)
    # when: u-1 was 1000, not 1200; and the correction is delivered twice
    _ingest(contract, ("u-1-fix", "1000", "2026-03-02T10:00:00Z", "u-1"))
    _ingest(contract, ("u-1-fix", "1000", "2026-03-02T10:00:00Z", "u-1"))
    report.refresh_from_db()
    assert (report.state, report.quantity) == (UsageReportState.PENDING, Decimal("1300"))
    first = usage_report_send(report_id=report.pk)
    second = usage_report_send(report_id=report.pk)
    # then
    assert (first, second) == ("reported", "reported")
    assert [row[:2] for row in _billed_usage(sandbox)] == [
        (f"usage-{report.pk}-1", "1500"),
        (f"usage-{report.pk}-2", "-200"),
    ]
    report.refresh_from_db()
    assert (report.reported_quantity, report.reported_amount) == (Decimal("1300"), Decimal("65"))


def test_the_current_month_waits_and_the_sweep_reports_it_once_ended(sandbox, monkeypatch):
    # given: usage of this month
    contract = _billed_contract()
    today = dt.date.today()
    _ingest(contract, ("u-1", "10", f"{today.isoformat()}T00:00:00Z", ""))
    report = UsageReport.objects.get()
    assert report.state == UsageReportState.OPEN
    assert usage_report_send(report_id=report.pk) == "open"
    assert _billed_usage(sandbox) == []
    # when: the month is over
    import orchestration.usage_report as module

    sent: list[int] = []
    monkeypatch.setattr(module, "_enqueue", sent.append)
    later = dt.datetime.combine(report.period_end + dt.timedelta(days=1), dt.time(1), dt.UTC)
    monkeypatch.setattr(module.timezone, "now", lambda: later)
    enqueued = usage_reports_sweep()
    # then
    report.refresh_from_db()
    assert (enqueued, sent, report.state) == (1, [report.pk], UsageReportState.PENDING)
