"""The crosswalk (external ids) and following merged accounts to their survivor."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from core.audit import audit_context
from core.errors import Refused
from masterdata.models import Account, AccountAlias, AccountStatus, ExternalId
from masterdata.selectors import account_by_enterprise_id, external_id_resolve
from masterdata.services import records as md
from tests import factories
from tests.q2c.helpers import database_snapshot


def _link(record, external_id: str = "0015g00000XyZ", **kw):  # type: ignore[no-untyped-def]
    values = {"system": "crm", "object_type": "account", "reason": "matched in CRM"}
    values.update(kw)
    return md.external_id_link(
        record=record, external_id=external_id, actor=factories.actor(), **values
    )


def _merge(loser: Account, survivor: Account) -> None:
    """Merged state built from the model's own transition (the merge service comes later)."""
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="duplicate"):
        loser.mark_merged(survivor=survivor)
        loser.save()


# --- external_id_link -------------------------------------------------------------------------


@pytest.mark.django_db
def test_linking_the_same_id_to_the_same_record_again_returns_the_first_link():
    # given
    account = factories.account()
    first = _link(account)
    history_before = first.history.count()
    # when
    again = _link(account, reason="webhook delivered twice")
    # then
    assert again.pk == first.pk
    assert ExternalId.objects.filter(external_id="0015g00000XyZ").count() == 1
    assert first.history.count() == history_before


@pytest.mark.django_db
def test_linking_an_id_that_names_another_record_is_refused():
    # given
    owner = factories.account()
    other = factories.account()
    _link(owner)
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        _link(other)
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.DUPLICATE,
        f"crm account 0015g00000XyZ already belongs to {owner.enterprise_id}",
    )
    assert database_snapshot() == before


@pytest.mark.django_db
def test_the_same_external_id_may_name_records_in_other_systems_or_types():
    # given
    account = factories.account()
    other = factories.account()
    _link(account, system="crm", object_type="account")
    # when
    _link(other, system="billing", object_type="account")
    _link(other, system="crm", object_type="contact")
    # then
    assert sorted(
        ExternalId.objects.values_list("system", "object_type", "external_id", "enterprise_id")
    ) == [
        ("billing", "account", "0015g00000XyZ", other.enterprise_id),
        ("crm", "account", "0015g00000XyZ", account.enterprise_id),
        ("crm", "contact", "0015g00000XyZ", other.enterprise_id),
    ]


@pytest.mark.django_db
def test_the_database_keeps_the_crosswalk_unique_per_system_type_and_id():
    # given
    owner = factories.account()
    other = factories.account()
    link = _link(owner)
    # when
    with pytest.raises(IntegrityError), transaction.atomic():
        ExternalId.objects.create(
            system=link.system,
            object_type=link.object_type,
            external_id=link.external_id,
            content_type=link.content_type,
            object_id=other.pk,
            enterprise_id=other.enterprise_id,
        )
    # then
    assert list(ExternalId.objects.values_list("object_id", flat=True)) == [owner.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("system", "external_id", "message"),
    [("sap", "4711", "unknown system 'sap'"), ("crm", "", "an external id cannot be empty")],
)
def test_linking_refuses_an_unknown_system_or_an_empty_id(system, external_id, message):
    # given
    account = factories.account()
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        _link(account, external_id=external_id, system=system)
    # then
    assert (refused.value.kind, refused.value.message) == (Refused.Kind.INVALID, message)
    assert database_snapshot() == before


# --- external_id_resolve ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_external_id_resolves_to_its_record():
    # given
    account = factories.account()
    order = factories.order(account=account)
    _link(account)
    _link(order, system="erp", object_type="sales_order", external_id="SO-1001")
    # when
    found_account = external_id_resolve(
        system="crm", object_type="account", external_id="0015g00000XyZ"
    )
    found_order = external_id_resolve(
        system="erp", object_type="sales_order", external_id="SO-1001"
    )
    # then
    assert (type(found_account), found_account.pk) == (Account, account.pk)
    assert (type(found_order).__name__, found_order.pk) == ("Order", order.pk)


@pytest.mark.django_db
def test_an_unknown_external_id_resolves_to_nothing():
    # given
    _link(factories.account())
    # when
    found = [
        external_id_resolve(system="crm", object_type="account", external_id="unknown"),
        external_id_resolve(system="billing", object_type="account", external_id="0015g00000XyZ"),
        external_id_resolve(system="crm", object_type="contact", external_id="0015g00000XyZ"),
    ]
    # then
    assert found == [None, None, None]


# --- account_by_enterprise_id -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_active_account_is_found_by_its_own_id():
    # given
    account = factories.account()
    # when
    found = account_by_enterprise_id(enterprise_id=account.enterprise_id)
    # then
    assert found == account


@pytest.mark.django_db
def test_a_merged_account_id_leads_to_its_survivor():
    # given
    loser = factories.account()
    survivor = factories.account()
    _merge(loser, survivor)
    # when
    found = account_by_enterprise_id(enterprise_id=loser.enterprise_id)
    # then
    assert found == survivor
    loser.refresh_from_db()
    assert (loser.status, loser.merged_into_id) == (AccountStatus.MERGED, survivor.pk)


@pytest.mark.django_db
def test_a_chain_of_merges_leads_to_the_last_survivor():
    # given
    first, second, last = factories.account(), factories.account(), factories.account()
    _merge(first, second)
    _merge(second, last)
    # when
    found = account_by_enterprise_id(enterprise_id=first.enterprise_id)
    # then
    assert found == last


def _alias(alias: str, account: Account) -> None:
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="legacy id"):
        AccountAlias.objects.create(alias=alias, account=account)


@pytest.mark.django_db
def test_an_alias_leads_to_the_account_that_holds_it():
    # given
    holder = factories.account()
    _alias("ACC-LEGACY-17", holder)
    # when
    found = account_by_enterprise_id(enterprise_id="ACC-LEGACY-17")
    # then
    assert found == holder


@pytest.mark.django_db
def test_an_alias_of_a_merged_account_leads_on_to_the_survivor():
    # given
    holder = factories.account()
    survivor = factories.account()
    _alias("ACC-LEGACY-17", holder)
    _merge(holder, survivor)
    # when
    found = account_by_enterprise_id(enterprise_id="ACC-LEGACY-17")
    # then
    assert found == survivor


@pytest.mark.django_db
def test_an_unknown_enterprise_id_finds_no_account():
    # given
    factories.account()
    # when
    found = account_by_enterprise_id(enterprise_id="ACC-999999")
    # then
    assert found is None


@pytest.mark.django_db
def test_merging_is_recorded_with_the_actor_and_reason():
    # given
    loser = factories.account()
    survivor = factories.account()
    # when
    _merge(loser, survivor)
    # then
    row = loser.history.order_by("-history_id").values_list(
        "status", "merged_into_id", "history_user__username", "history_change_reason"
    )[0]
    assert row == ("merged", survivor.pk, "worker", "duplicate")


# --- Records that do not validate ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_record_that_does_not_validate_is_refused_with_the_models_messages():
    # given
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        md.account_create(
            legal_name="Harbour Analytics Ltd", country="GB", currency="gbp",
            actor=factories.actor(), reason="from CPQ",
        )  # fmt: skip
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        "gbp is not an ISO 4217 currency code",
    )
    assert database_snapshot() == before


@pytest.mark.django_db
def test_an_unknown_account_detail_is_refused():
    # given
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        md.account_create(
            legal_name="Harbour Analytics Ltd", country="GB", currency="GBP",
            actor=factories.actor(), reason="from CPQ", vat="GB1", fax="0",
        )  # fmt: skip
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.INVALID,
        "unknown account fields: fax, vat",
    )
    assert database_snapshot() == before
