"""The comparison on its own: rows in, findings out (no database, no HTTP)."""

from __future__ import annotations

from decimal import Decimal

from orchestration.reconciliation.compare import RemoteRow, TandemRow, reconcile
from orchestration.reconciliation.sources import INVOICE_SPECS

SPEC = INVOICE_SPECS["billing"]


def _tandem(**changes: object) -> TandemRow:
    values: dict[str, object] = {
        "key": "in_1", "ref": "INV-000001", "reference": "ORD-000001", "currency": "GBP",
        "amount": Decimal("250.0000"), "tax": Decimal("50.0000"), "paid": Decimal(0),
        "status": "posted", "group": "2026-12-01:250.00",
    }  # fmt: skip
    values.update(changes)
    return TandemRow(**values)  # type: ignore[arg-type]


def _remote(**changes: object) -> RemoteRow:
    values: dict[str, object] = {
        "key": "in_1", "reference": "ORD-000001", "currency": "GBP", "amount": Decimal("250.00"),
        "tax": Decimal("50.00"), "paid": Decimal(0), "status": "open",
        "group": "2026-12-01:250.00",
    }  # fmt: skip
    values.update(changes)
    return RemoteRow(**values)  # type: ignore[arg-type]


def _found(tandem: list[TandemRow], remote: list[RemoteRow]) -> list[tuple[str, str]]:
    outcome = reconcile(SPEC, tandem_rows=tandem, remote_pages=[remote])
    return [(f.drift_type, f.detail) for f in outcome.findings]


def test_equal_records_once_rounded_to_the_currency_agree():
    assert _found([_tandem(amount=Decimal("250.0040"))], [_remote()]) == []


def test_an_amount_difference():
    assert _found([_tandem()], [_remote(amount=Decimal("260.00"))]) == [
        ("amount", "250.00 in Tandem, 260.00 in billing")
    ]


def test_a_tax_difference():
    assert _found([_tandem()], [_remote(tax=Decimal("40.00"))]) == [
        ("tax", "tax 50.00 in Tandem, 40.00 in billing")
    ]


def test_a_currency_difference_hides_the_amount_comparison():
    assert _found([_tandem()], [_remote(currency="EUR", amount=Decimal(1))]) == [
        ("currency", "GBP in Tandem, EUR in billing")
    ]


def test_a_payment_billing_applied_that_tandem_did_not_is_status_drift():
    assert _found([_tandem()], [_remote(paid=Decimal("100.00"))]) == [
        ("status", "paid 0.00 in Tandem, 100.00 in billing")
    ]


def test_a_status_difference_and_an_amount_difference_are_two_findings():
    assert [d for d, _ in _found([_tandem()], [_remote(status="void", amount=Decimal(0))])] == [
        "amount",
        "status",
    ]


def test_pages_are_joined_by_key_and_leftovers_are_missing_on_the_other_side():
    # given
    tandem = [_tandem(key="in_1"), _tandem(key="in_2", ref="INV-000002")]
    pages = [[_remote(key="in_1")], [_remote(key="in_3", reference="ORD-000009")]]
    # when
    outcome = reconcile(SPEC, tandem_rows=tandem, remote_pages=pages)
    # then
    assert sorted((f.drift_type, f.tandem_ref, f.remote_ref) for f in outcome.findings) == [
        ("missing_in_billing", "INV-000002", ""),
        ("missing_in_tandem", "", "in_3"),
    ]
    assert (outcome.tandem_rows, outcome.remote_rows) == (2, 2)


def test_an_amount_within_the_rows_rounding_slack_agrees_and_beyond_it_is_drift():
    # given five units at 118.09 less 5 %: Tandem 560.9275, a system pricing each unit at
    # the rounded net rate 112.19 says 560.95
    tandem = _tandem(amount=Decimal("560.9275"), slack=Decimal("0.025"))
    # when / then
    assert _found([tandem], [_remote(amount=Decimal("560.95"))]) == []
    assert _found([tandem], [_remote(amount=Decimal("560.96"))]) == [
        ("amount", "560.93 in Tandem, 560.96 in billing")
    ]
