"""Usage in: deduplicated by the sender's id, rated against the version in force on the usage
date, bad records reported back while the good ones land, corrections replacing records."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from core.records import BillingPeriod, LineKind
from q2c import services
from q2c.models import Contract, UsageRecord, UsageReport
from q2c.usage import RowError, UsageInput, usage_records_ingest, usage_row_parse
from tests import factories

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 12, 7)


def _usage_line(sku: str, price: str) -> services.LineInput:
    return factories.line(
        product_code=sku, kind=LineKind.USAGE, quantity=Decimal("0"),
        unit_price=Decimal(price), billing_period=BillingPeriod.NONE,
    )  # fmt: skip


def _metered_contract(price: str = "0.10") -> Contract:
    factories.product(sku="API-CALLS", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE)
    contract = factories.contract(lines=[factories.line(), _usage_line("API-CALLS", price)])
    services.contract_activate(contract=contract, actor=factories.actor(), reason="accepted")
    return contract


def _row(usage_id: str, contract: Contract, quantity: str, when: str, **kw: Any) -> UsageInput:
    return usage_row_parse(
        {
            "usage_id": usage_id,
            "contract_id": kw.pop("contract_id", contract.enterprise_id),
            "product_code": kw.pop("product_code", "API-CALLS"),
            "quantity": quantity,
            "occurred_at": when,
            **kw,
        }
    )


def _ingest(rows: list[UsageInput | RowError], source: str = "metering") -> Any:
    return usage_records_ingest(
        source_system=source, rows=rows, actor=factories.actor(), reason="usage from metering"
    )


def _stored() -> list[tuple[str, str, Decimal, Decimal, Decimal, str]]:
    return [
        (r.source_event_id, r.state, r.quantity, r.unit_price, r.amount, r.currency)
        for r in UsageRecord.objects.order_by("source_event_id")
    ]


def test_records_are_stored_rated_and_numbered_with_history():
    # given
    contract = _metered_contract()
    # when
    result = _ingest(
        [
            _row("u-1", contract, "1200", "2026-03-02T10:00:00Z"),
            _row("u-2", contract, "800.5", "2026-03-31T23:59:59+00:00"),
        ]
    )
    # then
    assert (result.created, result.duplicates, result.errors) == (2, 0, [])
    assert _stored() == [
        ("u-1", "rated", Decimal("1200"), Decimal("0.10"), Decimal("120.00"), "GBP"),
        ("u-2", "rated", Decimal("800.5"), Decimal("0.10"), Decimal("80.05"), "GBP"),
    ]
    ids = sorted(UsageRecord.objects.values_list("enterprise_id", flat=True))
    assert ids == ["USG-000001", "USG-000002"]
    history = UsageRecord.history.order_by("source_event_id").values_list(  # type: ignore[attr-defined]
        "source_event_id", "history_type", "history_user__username", "history_change_reason",
        "amount",
    )  # fmt: skip
    assert list(history) == [
        ("u-1", "+", "worker", "usage from metering", Decimal("120.00")),
        ("u-2", "+", "worker", "usage from metering", Decimal("80.05")),
    ]
    [report] = UsageReport.objects.all()
    assert (report.period_start, report.period_end, report.quantity, report.amount) == (
        dt.date(2026, 3, 1), dt.date(2026, 3, 31), Decimal("2000.5"), Decimal("200.05"),
    )  # fmt: skip


def test_a_sender_id_seen_before_or_twice_in_a_request_is_a_duplicate_and_changes_nothing():
    # given
    contract = _metered_contract()
    _ingest([_row("u-1", contract, "10", "2026-03-02T10:00:00Z")])
    before = _stored()
    # when
    result = _ingest(
        [
            _row("u-1", contract, "99", "2026-03-02T10:00:00Z"),
            _row("u-2", contract, "5", "2026-03-03T10:00:00Z"),
            _row("u-2", contract, "7", "2026-03-03T10:00:00Z"),
        ]
    )
    # then
    assert (result.created, result.duplicates, result.errors) == (1, 2, [])
    assert _stored() == [*before, ("u-2", "rated", Decimal("5"), Decimal("0.10"),
                                   Decimal("0.50"), "GBP")]  # fmt: skip
    assert UsageReport.objects.get().quantity == Decimal("15")


def test_the_same_id_from_another_sender_is_another_record():
    # given
    contract = _metered_contract()
    _ingest([_row("u-1", contract, "10", "2026-03-02T10:00:00Z")], source="metering")
    # when
    result = _ingest([_row("u-1", contract, "4", "2026-03-02T10:00:00Z")], source="gateway")
    # then
    assert (result.created, result.duplicates) == (1, 0)


def test_usage_in_an_older_versions_term_is_rated_at_that_versions_price():
    # given: 0.10 per call until the amendment from 1 June sets 0.08
    contract = _metered_contract("0.10")
    services.contract_amend(
        contract=contract, effective_date=dt.date(2026, 6, 1),
        lines=[factories.line(), _usage_line("API-CALLS", "0.08")],
        actor=factories.actor(), reason="new usage price",
    )  # fmt: skip
    # when: the May usage arrives after the amendment took effect
    result = _ingest(
        [
            _row("may", contract, "1000", "2026-05-31T23:00:00Z"),
            _row("june", contract, "1000", "2026-06-01T00:30:00Z"),
        ]
    )
    # then
    assert result.created == 2
    rated = {r.source_event_id: (r.contract_version.number, r.unit_price, r.amount)
             for r in UsageRecord.objects.select_related("contract_version")}  # fmt: skip
    assert rated == {
        "may": (1, Decimal("0.10"), Decimal("100.00")),
        "june": (2, Decimal("0.08"), Decimal("80.00")),
    }
    reports = UsageReport.objects.order_by("period_start").values_list(
        "contract_version__number", "period_start", "unit_price", "amount"
    )
    assert list(reports) == [
        (1, dt.date(2026, 5, 1), Decimal("0.10"), Decimal("100.00")),
        (2, dt.date(2026, 6, 1), Decimal("0.08"), Decimal("80.00")),
    ]


def test_bad_records_are_rejected_with_reasons_while_good_ones_land():
    # given
    contract = _metered_contract()
    factories.product(sku="STORAGE-GB", kind=LineKind.USAGE, billing_period=BillingPeriod.NONE)
    bad_parse = RowError(2, "u-3", 'quantity must be a decimal string, e.g. "12.5"')
    # when
    result = _ingest(
        [
            _row("u-1", contract, "10", "2026-03-02T10:00:00Z"),
            _row("u-2", contract, "10", "2026-03-02T10:00:00Z", contract_id="CTR-999999"),
            bad_parse,
            _row("u-4", contract, "10", "2027-01-02T10:00:00Z"),
            _row("u-5", contract, "10", "2026-03-02T10:00:00Z", product_code="STORAGE-GB"),
            _row("u-6", contract, "10", "2026-03-02T10:00:00Z", corrects="nope"),
            _row("u-7", contract, "2", "2026-03-05T10:00:00Z"),
        ]
    )
    # then
    assert (result.created, result.duplicates) == (2, 0)
    assert [(e.index, e.usage_id, e.reason) for e in result.errors] == [
        (1, "u-2", "unknown contract CTR-999999"),
        (2, "u-3", bad_parse.reason),
        (3, "u-4", f"2027-01-02 is outside {contract.enterprise_id}'s term "
                   "(2026-01-01 to 2026-12-31)"),
        (4, "u-5", f"STORAGE-GB is not a usage line of {contract.enterprise_id} on 2026-03-02"),
        (5, "u-6", "corrects nope, which is not a stored usage record"),
    ]  # fmt: skip
    assert [row[0] for row in _stored()] == ["u-1", "u-7"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"quantity": 12}, "quantity must be a decimal string"),
        ({"quantity": "-1"}, "quantity must be a number from 0 to 10^14"),
        ({"quantity": "1.00001"}, "quantity has more than 4 decimal places"),
        ({"quantity": "NaN"}, "quantity must be a number from 0 to 10^14"),
        ({"occurred_at": "2026-03-02T10:00:00"}, "occurred_at must be a timestamp with its offset"),
        ({"occurred_at": "yesterday"}, "occurred_at must be a timestamp with its offset"),
        ({"usage_id": ""}, "usage_id is required"),
        ({"colour": "red"}, "unknown fields: colour"),
    ],
)
def test_a_record_that_does_not_parse_says_why(row, message):
    # given
    good = {
        "usage_id": "u-1", "contract_id": "CTR-000001", "product_code": "API-CALLS",
        "quantity": "1", "occurred_at": "2026-03-02T10:00:00Z",
    }  # fmt: skip
    # when
    with pytest.raises(ValueError) as caught:
        usage_row_parse({**good, **row})
    # then
    assert str(caught.value).startswith(message)


def test_a_correction_replaces_the_record_it_names_and_the_period_total_follows():
    # given
    contract = _metered_contract()
    _ingest(
        [
            _row("u-1", contract, "100", "2026-03-02T10:00:00Z"),
            _row("u-2", contract, "50", "2026-03-03T10:00:00Z"),
        ]
    )
    # when: u-1 was 80, then 70
    first = _ingest([_row("u-1b", contract, "80", "2026-03-02T10:00:00Z", corrects="u-1")])
    second = _ingest([_row("u-1c", contract, "70", "2026-03-02T10:00:00Z", corrects="u-1")])
    # then
    assert (first.created, second.created) == (1, 1)
    flags = dict(UsageRecord.objects.values_list("source_event_id", "superseded"))
    assert flags == {"u-1": True, "u-2": False, "u-1b": True, "u-1c": False}
    assert UsageReport.objects.get().quantity == Decimal("120")
    superseded = UsageRecord.history.filter(  # type: ignore[attr-defined]
        source_event_id="u-1", superseded=True
    ).values_list("history_type", "history_change_reason")
    assert list(superseded) == [("~", "usage from metering")]


def test_a_correction_of_another_contracts_record_is_rejected_and_nothing_changes():
    # given
    contract = _metered_contract()
    other = factories.contract(lines=[factories.line(), _usage_line("API-CALLS", "0.20")])
    services.contract_activate(contract=other, actor=factories.actor(), reason="accepted")
    _ingest([_row("u-1", contract, "100", "2026-03-02T10:00:00Z")])
    before = _stored()
    # when
    result = _ingest([_row("x-1", other, "80", "2026-03-02T10:00:00Z", corrects="u-1")])
    # then
    assert [e.reason for e in result.errors] == ["corrects u-1 of another contract or product"]
    assert _stored() == before
    assert not UsageRecord.objects.filter(superseded=True).exists()


def test_identifiers_that_gain_a_digit_mid_request_keep_their_history_rows():
    # given: the next usage number is 999 999
    from core.models import IdentifierCounter

    contract = _metered_contract()
    IdentifierCounter.objects.update_or_create(prefix="USG", defaults={"last_value": 999_998})
    # when
    result = _ingest([_row(f"u-{n}", contract, "1", "2026-03-02T10:00:00Z") for n in range(3)])
    # then
    assert result.created == 3
    history = UsageRecord.history.values_list("enterprise_id", "history_type")  # type: ignore[attr-defined]
    assert sorted(history) == [("USG-1000000", "+"), ("USG-1000001", "+"), ("USG-999999", "+")]
