"""Contract versions: every activation, amendment, renewal and cancellation is a version, and
exactly one version of a contract is active at a time."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from core.audit import audit_context
from core.errors import Refused
from q2c import services
from q2c.models import Contract, ContractState, ContractVersion, VersionKind
from tests import factories
from tests.q2c.helpers import last_history


def _versions(contract: Contract) -> list[tuple[int, str, str]]:
    return list(contract.versions.order_by("number").values_list("number", "kind", "state"))


def _active(**kw: object) -> Contract:
    contract = factories.contract(**kw)
    services.contract_activate(contract=contract, actor=factories.actor(), reason="ERP accepted")
    return contract


@pytest.mark.django_db
def test_a_new_contract_has_version_one_pending():
    # given
    account = factories.account()
    # when
    contract = factories.contract(account=account)
    # then
    assert contract.state == ContractState.PENDING_ACTIVATION
    assert _versions(contract) == [(1, "initial", "pending")]


@pytest.mark.django_db
def test_activating_a_contract_activates_version_one():
    # given
    contract = factories.contract()
    # when
    services.contract_activate(contract=contract, actor=factories.actor(), reason="ERP accepted")
    # then
    contract.refresh_from_db()
    assert contract.state == ContractState.ACTIVE
    assert _versions(contract) == [(1, "initial", "active")]
    assert last_history(contract.versions.get(number=1)) == ("active", "worker", "ERP accepted")


@pytest.mark.django_db
def test_an_amendment_is_version_two_active_and_supersedes_version_one():
    # given
    contract = _active()
    # when
    version = services.contract_amend(
        contract=contract,
        effective_date=dt.date(2026, 7, 1),
        lines=[factories.line(quantity=Decimal("15"))],
        actor=factories.actor(),
        reason="upsell: 5 more seats",
    )
    # then
    assert (version.number, version.kind, version.state, version.effective_date) == (
        2,
        "amendment",
        "active",
        dt.date(2026, 7, 1),
    )
    assert _versions(contract) == [(1, "initial", "superseded"), (2, "amendment", "active")]
    assert list(version.lines.values_list("line_no", "quantity", "amount")) == [
        (1, Decimal("15.0000"), Decimal("375.0000"))
    ]


@pytest.mark.django_db
def test_an_amendment_outside_the_term_is_refused_and_changes_nothing():
    # given
    contract = _active()
    history_before = contract.history.count()
    # when
    with pytest.raises(Refused) as refused:
        services.contract_amend(
            contract=contract,
            effective_date=dt.date(2027, 2, 1),
            lines=[factories.line()],
            actor=factories.actor(),
            reason="upsell",
        )
    # then
    assert refused.value.message == "an amendment takes effect within the contract term"
    assert _versions(contract) == [(1, "initial", "active")]
    assert contract.history.count() == history_before


@pytest.mark.django_db
def test_the_database_refuses_two_active_versions_of_one_contract():
    # given
    contract = _active()
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="direct write"):
        second = ContractVersion.objects.create(
            contract=contract,
            number=2,
            kind=VersionKind.AMENDMENT,
            effective_date=dt.date(2026, 7, 1),
        )
    # when: activated without superseding version 1 first
    with (
        pytest.raises(IntegrityError) as refused,
        transaction.atomic(),
        audit_context(actor=factories.actor(), reason="direct write"),
    ):
        second.activate()
        second.save()
    # then
    # SQLite names a unique index by its columns; contract_id alone is only the partial one.
    expected = {
        "postgresql": 'duplicate key value violates unique constraint "contractversion_one_active"',
        "sqlite": "UNIQUE constraint failed: q2c_contractversion.contract_id",
    }[connection.vendor]
    assert str(refused.value).splitlines()[0] == expected
    assert _versions(contract) == [(1, "initial", "active"), (2, "amendment", "pending")]


@pytest.mark.django_db
def test_a_renewal_is_pending_until_its_term_starts():
    # given
    contract = _active()
    # when
    renewal = services.contract_renew(
        contract=contract,
        new_end_date=dt.date(2027, 12, 31),
        lines=[factories.line()],
        actor=factories.actor(),
        reason="renewed for 2027",
    )
    # then
    contract.refresh_from_db()
    assert (contract.state, contract.end_date) == (ContractState.RENEWED, dt.date(2027, 12, 31))
    assert (renewal.number, renewal.kind, renewal.effective_date) == (
        2,
        "renewal",
        dt.date(2027, 1, 1),
    )
    assert _versions(contract) == [(1, "initial", "active"), (2, "renewal", "pending")]


@pytest.mark.django_db
def test_starting_the_renewal_term_activates_the_renewal_version():
    # given
    contract = _active()
    services.contract_renew(
        contract=contract,
        new_end_date=dt.date(2027, 12, 31),
        lines=[factories.line()],
        actor=factories.actor(),
        reason="renewed for 2027",
    )
    # when
    services.contract_start_renewal_term(
        contract=contract, actor=factories.actor(), reason="renewal term began"
    )
    # then
    contract.refresh_from_db()
    assert contract.state == ContractState.ACTIVE
    assert _versions(contract) == [(1, "initial", "superseded"), (2, "renewal", "active")]
    assert last_history(contract) == ("active", "worker", "renewal term began")


@pytest.mark.django_db
def test_cancelling_creates_a_cancellation_version():
    # given
    contract = _active()
    # when
    services.contract_cancel(
        contract=contract,
        effective_date=dt.date(2026, 6, 30),
        actor=factories.actor(),
        reason="customer went out of business",
    )
    # then
    contract.refresh_from_db()
    assert (contract.state, contract.cancellation_reason) == (
        ContractState.CANCELLED,
        "customer went out of business",
    )
    assert _versions(contract) == [(1, "initial", "superseded"), (2, "cancellation", "active")]
    cancellation = contract.versions.get(number=2)
    assert (cancellation.effective_date, cancellation.lines.count()) == (dt.date(2026, 6, 30), 0)


@pytest.mark.django_db
def test_expiry_expires_only_active_contracts_whose_term_ended():
    # given
    ended = _active(end_date=dt.date(2026, 12, 31))
    ends_today = _active(end_date=dt.date(2027, 1, 1))
    running = _active(end_date=dt.date(2027, 6, 30))
    pending_ended = factories.contract(end_date=dt.date(2026, 12, 31))
    cancelled_ended = _active(end_date=dt.date(2026, 12, 31))
    services.contract_cancel(
        contract=cancelled_ended,
        effective_date=dt.date(2026, 6, 30),
        actor=factories.actor(),
        reason="customer left",
    )
    others = [ends_today, running, pending_ended, cancelled_ended]
    others_history = [c.history.count() for c in others]
    # when
    expired = services.contracts_expire_ended(today=dt.date(2027, 1, 1))
    # then
    assert expired == 1
    ended.refresh_from_db()
    assert ended.state == ContractState.EXPIRED
    assert last_history(ended) == ("expired", "worker", "term ended on 2026-12-31")
    assert [Contract.objects.get(pk=c.pk).state for c in others] == [
        "active",
        "active",
        "pending_activation",
        "cancelled",
    ]
    assert [c.history.count() for c in others] == others_history


@pytest.mark.django_db
def test_expiry_run_twice_expires_nothing_more():
    # given
    _active(end_date=dt.date(2026, 12, 31))
    services.contracts_expire_ended(today=dt.date(2027, 1, 1))
    # when
    again = services.contracts_expire_ended(today=dt.date(2027, 1, 1))
    # then
    assert again == 0
