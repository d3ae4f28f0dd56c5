"""Contract versions as the spine: a change names the version it amends, waits behind a
version not yet in effect, is parked (never applied) when stale, is recorded once per key,
and takes effect on its date; renewals, non-renewal, expiry and cancellation credits."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection

from core.errors import Refused
from exceptions.models import OperationalException
from q2c import lifecycle, services
from q2c.models import (
    Contract,
    ContractState,
    ContractVersion,
    CreditNote,
    VersionCause,
    VersionKind,
    VersionState,
)
from tests import factories
from tests.q2c.helpers import last_history


def _active(**kw: object) -> Contract:
    contract = factories.contract(**kw)
    services.contract_activate(contract=contract, actor=factories.actor(), reason="ERP accepted")
    contract.refresh_from_db()
    return contract


def _change(contract: Contract, quantity: str, *, key: str, base: int | None = None,
            on: dt.date = dt.date(2026, 4, 1)) -> lifecycle.ChangeRecorded:  # fmt: skip
    return lifecycle.contract_change_record(
        contract=contract, kind=VersionKind.AMENDMENT, effective_date=on,
        lines=[factories.line(quantity=Decimal(quantity))], cause=VersionCause.EVENT,
        cause_ref=key, change_key=key, base_number=base, actor=factories.actor(),
        reason=f"amendment {key}",
    )  # fmt: skip


def _states(contract: Contract) -> list[tuple[int, str, str, int | None]]:
    return [
        (v.number, v.kind, v.state, v.base_version.number if v.base_version else None)
        for v in contract.versions.select_related("base_version").order_by("number")
    ]


@pytest.mark.django_db
def test_a_change_is_a_pending_version_naming_its_base_cause_and_what_changed():
    # given
    contract = _active()
    # when
    recorded = _change(contract, "15", key="amd-1", base=1)
    # then
    version = recorded.version
    assert (recorded.created, recorded.parked) == (True, False)
    assert _states(contract) == [(1, "initial", "active", None), (2, "amendment", "pending", 1)]
    assert (version.cause, version.cause_ref, version.effective_date, version.reason) == (
        "event", "amd-1", dt.date(2026, 4, 1), "amendment amd-1",
    )  # fmt: skip
    assert version.changes == {
        "lines": [
            {"product_code": "SKU-X", "from_quantity": "10", "to_quantity": "15",
             "from_price": "25.00", "to_price": "25.00"}
        ]
    }  # fmt: skip
    assert last_history(version) == ("pending", "worker", "amendment amd-1")


@pytest.mark.django_db
def test_the_same_change_again_is_the_same_version():
    # given
    contract = _active()
    first = _change(contract, "15", key="amd-1")
    # when
    again = _change(contract, "15", key="amd-1")
    # then
    assert (again.version.pk, again.created) == (first.version.pk, False)
    assert contract.versions.count() == 2


@pytest.mark.django_db
def test_a_stale_change_is_parked_with_an_exception_and_never_applied():
    # given
    contract = _active()
    winner = _change(contract, "15", key="amd-1", base=1)
    lifecycle.contract_version_apply(
        version=winner.version,
        actor=factories.actor(),
        reason="in effect",
        today=dt.date(2026, 4, 1),
    )
    # when: another change still names v1
    stale = _change(contract, "8", key="amd-2", base=1)
    # then
    assert (stale.created, stale.parked) == (True, True)
    assert _states(contract) == [
        (1, "initial", "superseded", None), (2, "amendment", "active", 1),
        (3, "amendment", "parked", 1),
    ]  # fmt: skip
    assert stale.version.parked_reason == (
        "v3 (amendment) amends v1, but v2 (amendment) already changed it; not applied"
    )
    item = OperationalException.objects.get(error_class="StaleContractChange")
    assert (item.correlation_id, item.category) == (contract.enterprise_id, "validation")
    with pytest.raises(Refused, match="parked; not applied"):
        lifecycle.contract_version_apply(
            version=stale.version, actor=factories.actor(), reason="try", today=dt.date(2026, 5, 1)
        )
    assert contract.versions.get(state=VersionState.ACTIVE).number == 2


@pytest.mark.django_db
def test_a_change_on_a_version_not_yet_active_waits_for_it():
    # given: v2 takes effect on 1 June; v3 amends v2
    contract = _active()
    v2 = _change(contract, "15", key="amd-1", on=dt.date(2026, 6, 1)).version
    v3 = _change(contract, "20", key="amd-2", base=2, on=dt.date(2026, 5, 1)).version
    # when / then: v3's date has come but its base is not in effect, so it waits
    assert lifecycle.versions_due(today=dt.date(2026, 5, 15)) == []
    with pytest.raises(Refused, match="waits"):
        lifecycle.contract_version_apply(
            version=v3, actor=factories.actor(), reason="try", today=dt.date(2026, 5, 15)
        )
    assert _states(contract)[1:] == [(2, "amendment", "pending", 1), (3, "amendment", "pending", 2)]
    # when v2 takes effect on its date, v3 is due after it
    assert lifecycle.versions_due(today=dt.date(2026, 6, 1)) == [v2]
    lifecycle.contract_version_apply(
        version=v2, actor=factories.actor(), reason="due", today=dt.date(2026, 6, 1)
    )
    assert lifecycle.versions_due(today=dt.date(2026, 6, 1)) == [v3]


@pytest.mark.django_db
def test_a_future_dated_change_takes_effect_on_its_date_not_before():
    # given
    contract = _active()
    version = _change(contract, "15", key="amd-1", on=dt.date(2026, 9, 1)).version
    # when
    with pytest.raises(Refused, match="takes effect on 2026-09-01"):
        lifecycle.contract_version_apply(
            version=version, actor=factories.actor(), reason="early", today=dt.date(2026, 8, 31)
        )
    assert lifecycle.versions_due(today=dt.date(2026, 8, 31)) == []
    lifecycle.contract_version_apply(
        version=version, actor=factories.actor(), reason="due", today=dt.date(2026, 9, 1)
    )
    # then
    assert _states(contract) == [(1, "initial", "superseded", None), (2, "amendment", "active", 1)]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_changes_on_the_same_version_serialise_and_one_is_parked():
    # given
    contract = _active()
    barrier = threading.Barrier(2)
    outcomes: list[lifecycle.ChangeRecorded] = []

    def change(quantity: str, key: str) -> None:
        barrier.wait()
        try:
            outcomes.append(_change(contract, quantity, key=key, base=1))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=change, args=(q, k)) for q, k in (("15", "a"), ("20", "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: one is pending on v1, the other parked naming the first
    assert sorted((o.parked, o.version.number) for o in outcomes) == [(False, 2), (True, 3)]
    assert ContractVersion.objects.filter(contract=contract, state="pending").count() == 1


@pytest.mark.django_db
def test_a_change_of_a_contract_not_active_is_refused_and_writes_nothing():
    # given
    contract = factories.contract()  # pending activation
    # when
    with pytest.raises(Refused, match="only an active contract changes"):
        _change(contract, "15", key="amd-1")
    # then
    assert contract.versions.count() == 1


@pytest.mark.django_db
def test_a_change_naming_no_such_version_is_refused_and_writes_nothing():
    contract = _active()
    with pytest.raises(Refused, match="has no version 7"):
        _change(contract, "15", key="amd-1", base=7)
    assert contract.versions.count() == 1


# --- renewals ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_auto_renewal_is_a_new_term_with_the_uplift():
    # given
    contract = _active()
    lifecycle.contract_renewal_terms_set(
        contract=contract, auto_renew=True, uplift_percent=Decimal("5"), actor=factories.actor(),
        reason="customer signed auto-renewal",
    )  # fmt: skip
    # when
    due = lifecycle.contracts_renewal_due(today=dt.date(2026, 12, 31))
    recorded = lifecycle.contract_auto_renew(contract=due[0], actor=factories.actor())
    again = lifecycle.contract_auto_renew(contract=due[0], actor=factories.actor())
    # then
    contract.refresh_from_db()
    version = recorded.version
    assert (contract.state, contract.end_date) == ("renewed", dt.date(2027, 12, 31))
    assert (version.kind, version.effective_date, version.term_end, version.cause) == (
        "renewal", dt.date(2027, 1, 1), dt.date(2027, 12, 31), "schedule",
    )  # fmt: skip
    assert [(line.quantity, line.unit_price) for line in version.lines.all()] == [
        (Decimal("10.0000"), Decimal("26.2500"))
    ]
    assert again.version.pk == version.pk and not again.created
    # when the new term starts
    lifecycle.contract_version_apply(
        version=version, actor=factories.actor(), reason="term", today=dt.date(2027, 1, 1)
    )
    contract.refresh_from_db()
    assert contract.state == ContractState.ACTIVE
    assert _states(contract)[-1] == (2, "renewal", "active", 1)


@pytest.mark.django_db
def test_the_expiry_job_expires_only_contracts_that_are_not_renewing():
    # given
    ending = _active()
    auto = _active()
    lifecycle.contract_renewal_terms_set(
        contract=auto, auto_renew=True, actor=factories.actor(), reason="auto-renews"
    )
    cancelling = _active()
    lifecycle.contract_change_record(
        contract=cancelling, kind=VersionKind.CANCELLATION, effective_date=dt.date(2026, 12, 31),
        lines=None, cause=VersionCause.OPERATOR, cause_ref="fiona", change_key="cx-1",
        actor=factories.actor(), reason="ends at term end",
    )  # fmt: skip
    # when
    expired = services.contracts_expire_ended(today=dt.date(2027, 1, 1))
    # then
    states = {c.pk: c.state for c in Contract.objects.all()}
    assert expired == 1
    assert (states[ending.pk], states[auto.pk], states[cancelling.pk]) == (
        "expired", "active", "active",
    )  # fmt: skip


@pytest.mark.django_db
def test_non_renewal_turns_auto_renewal_off_with_history():
    contract = _active()
    lifecycle.contract_renewal_terms_set(
        contract=contract, auto_renew=True, actor=factories.actor(), reason="auto"
    )
    lifecycle.contract_renewal_terms_set(
        contract=contract, auto_renew=False, actor=factories.actor(), reason="customer gave notice"
    )
    contract.refresh_from_db()
    assert contract.auto_renew is False
    assert lifecycle.contracts_renewal_due(today=dt.date(2026, 12, 31)) == []
    assert last_history(contract) == ("active", "worker", "customer gave notice")


# --- cancellation credit ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_unused_period_is_credited_by_days_left_in_the_billing_period():
    contract = _active()
    version = services.contract_active_version(contract=contract)
    assert version is not None
    # 10 x 25.00 monthly; cancelled on 21 April: 10 of April's 30 days are left
    credit = lifecycle.unused_credit(
        contract=contract, lines=list(version.lines.all()), on=dt.date(2026, 4, 21)
    )
    assert [(c.product_code, c.quantity, c.unit_credit, c.amount) for c in credit] == [
        ("SKU-X", Decimal("10.0000"), Decimal("8.33"), Decimal("83.30"))
    ]


@pytest.mark.django_db
def test_a_cancellation_credit_note_is_issued_once_per_version():
    # given
    contract = _active()
    version = lifecycle.contract_change_record(
        contract=contract, kind=VersionKind.CANCELLATION, effective_date=dt.date(2026, 4, 21),
        lines=None, cause=VersionCause.EVENT, cause_ref="cx-1", change_key="cx-1",
        actor=factories.actor(), reason="customer left",
    ).version  # fmt: skip
    # when
    note = lifecycle.credit_note_for_version(
        version=version, amount=Decimal("83.30"), actor=factories.actor(), reason="unused period"
    )
    again = lifecycle.credit_note_for_version(
        version=version, amount=Decimal("83.30"), actor=factories.actor(), reason="unused period"
    )
    # then
    assert again.pk == note.pk
    assert (note.state, note.amount, note.currency, note.contract, note.invoice) == (
        "issued", Decimal("83.30"), contract.currency, contract, None,
    )  # fmt: skip
    assert CreditNote.objects.count() == 1
    assert last_history(note) == ("issued", "worker", "unused period")


@pytest.mark.django_db
def test_a_second_renewal_of_the_same_term_is_parked_and_changes_nothing():
    # given
    contract = _active()
    version = services.contract_active_version(contract=contract)
    assert version is not None
    lines = lifecycle.renewal_lines(contract, version)
    lifecycle.contract_renewal_record(
        contract=contract, term_end=dt.date(2027, 12, 31), lines=lines, cause=VersionCause.EVENT,
        cause_ref="rn-1", change_key="renewal:rn-1", actor=factories.actor(), reason="quoted",
    )  # fmt: skip
    contract.refresh_from_db()
    # when
    second = lifecycle.contract_renewal_record(
        contract=contract, term_end=dt.date(2028, 12, 31), lines=lines, cause=VersionCause.EVENT,
        cause_ref="rn-2", change_key="renewal:rn-2", actor=factories.actor(), reason="again",
    )  # fmt: skip
    # then
    contract.refresh_from_db()
    assert second.parked is True
    assert (contract.state, contract.end_date) == ("renewed", dt.date(2027, 12, 31))
    assert _states(contract)[1:] == [(2, "renewal", "pending", 1), (3, "renewal", "parked", 1)]
