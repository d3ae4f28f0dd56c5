"""Merging accounts and undoing a merge: every reference moves, and moves back exactly."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.test import override_settings

from core.errors import Refused
from masterdata.models import (
    Account,
    AccountStatus,
    MergedReference,
    MergeRecord,
    MergeState,
    PushState,
)
from masterdata.selectors import account_by_enterprise_id, external_id_resolve
from masterdata.services import merges as md
from orchestration.workflows.models import WorkflowRun
from q2c.models import Order
from tests import factories
from tests.masterdata import helpers
from tests.q2c.helpers import database_snapshot

REASON = "same company: one tax id"


@pytest.mark.django_db
def test_merge_moves_every_reference_to_the_survivor_and_unmerge_moves_them_back(make_user):
    # given
    world = helpers.world()
    exc = helpers.ambiguity_exception(world.survivor.enterprise_id, world.loser.enterprise_id)
    actor = helpers.steward(make_user)
    before = helpers.reference_snapshot()
    # when
    merge = md.merge_request(survivor=world.survivor, loser=world.loser, actor=actor, reason=REASON)
    # then: everything names the survivor
    after_merge = helpers.reference_snapshot()
    moved = {
        key
        for key, value in before.items()
        if key.startswith(("q2c.", "externalid#")) and after_merge[key] != value
    }
    assert len(moved) == 7  # quote, order, contract, invoice, credit note, payment, crosswalk
    for key in moved:
        value = after_merge[key]
        assert value == (
            (helpers.account_ct().pk, world.survivor.pk, world.survivor.enterprise_id)
            if key.startswith("externalid#")
            else world.survivor.pk
        )
    assert after_merge["aliases"] == [(world.loser.enterprise_id, world.survivor.pk)]
    exc.refresh_from_db()
    assert exc.context["candidates"] == [world.survivor.enterprise_id] * 2
    loser = Account.objects.get(pk=world.loser.pk)
    assert (loser.status, loser.merged_into_id) == (AccountStatus.MERGED, world.survivor.pk)
    assert (merge.state, merge.requested_by_id, merge.approved_by_id) == (
        MergeState.MERGED,
        actor.user.pk,
        None,
    )
    assert MergedReference.objects.filter(merge=merge).count() == 9  # + alias + exception
    order = Order.objects.get(pk=world.records[9].pk)
    assert list(
        order.history.values_list("account_id", "history_user_id", "history_change_reason")[:1]
    ) == [(world.survivor.pk, actor.user.pk, REASON)]
    # when: undone
    md.account_unmerge(merge=merge, actor=actor, reason="two companies after all")
    # then: exactly as before
    assert helpers.reference_snapshot() == before
    merge.refresh_from_db()
    assert merge.state == MergeState.UNMERGED
    assert set(merge.references.values_list("moved_back", flat=True)) == {True}


@pytest.mark.django_db
def test_an_old_id_of_the_loser_resolves_to_the_survivor(make_user):
    # given
    world = helpers.world()
    # when
    md.merge_request(
        survivor=world.survivor, loser=world.loser, actor=helpers.steward(make_user),
        reason=REASON,
    )  # fmt: skip
    # then
    assert account_by_enterprise_id(enterprise_id=world.loser.enterprise_id) == world.survivor
    assert external_id_resolve(system="crm", object_type="account", external_id="001L") == (
        world.survivor
    )


@pytest.mark.django_db
def test_records_created_after_the_merge_stay_with_the_survivor_unless_picked(make_user):
    # given
    world = helpers.world()
    actor = helpers.steward(make_user)
    merge = md.merge_request(survivor=world.survivor, loser=world.loser, actor=actor, reason=REASON)
    stays = factories.order(account=Account.objects.get(pk=world.survivor.pk))
    picked = factories.order(account=Account.objects.get(pk=world.survivor.pk))
    # when
    md.account_unmerge(merge=merge, actor=actor, reason="wrong merge", also_move=[picked])
    # then
    assert Order.objects.get(pk=stays.pk).account_id == world.survivor.pk
    assert Order.objects.get(pk=picked.pk).account_id == world.loser.pk
    assert Order.objects.get(pk=picked.pk).history.first().history_change_reason == "wrong merge"


@pytest.mark.django_db
def test_survivorship_takes_the_trusted_system_then_the_newest_non_empty_value(make_user):
    # given
    survivor = factories.account(legal_name="Acme Ltd", email="", city="Leeds", phone="1")
    loser = factories.account(legal_name="ACME Limited", email="ap@acme.com", city="York",
                              phone="2")  # fmt: skip
    helpers.link(loser, "erp", "C-9")  # the ERP is the most trusted system for legal names
    # when
    defaults = {item.field: (item.keep, item.rule) for item in md.survivorship_defaults(
        survivor=Account.objects.get(pk=survivor.pk), loser=Account.objects.get(pk=loser.pk)
    )}  # fmt: skip
    # then
    assert defaults["legal_name"] == ("loser", "most trusted system for legal_name: erp")
    assert defaults["email"] == ("loser", "the only non-empty value")
    assert defaults["domain"] == ("survivor", "same")


@pytest.mark.django_db
def test_survivorship_without_a_trusted_system_takes_the_newest_value():
    # given
    loser = factories.account(legal_name="Acme Ltd", city="Leeds")
    survivor = factories.account(legal_name="Acme Ltd", city="York")  # written last
    # when
    defaults = {item.field: (item.keep, item.rule) for item in md.survivorship_defaults(
        survivor=survivor, loser=loser
    )}  # fmt: skip
    # then
    assert defaults["city"] == ("survivor", "most recent value")


@pytest.mark.django_db
def test_chosen_values_survive_and_unmerge_gives_the_survivor_its_own_back(make_user):
    # given
    world = helpers.world()
    actor = helpers.steward(make_user)
    # when
    merge = md.merge_request(
        survivor=world.survivor, loser=world.loser, actor=actor, reason=REASON,
        field_choices={"legal_name": "survivor", "phone": "loser"},
    )  # fmt: skip
    # then
    survivor = Account.objects.get(pk=world.survivor.pk)
    assert (survivor.legal_name, survivor.phone) == ("Acme Systems Ltd", "+44 20 7946 0018")
    assert merge.survivor_before == {"phone": "", "tax_id": "GB123456789"}  # newest tax id
    md.account_unmerge(merge=merge, actor=actor, reason="wrong merge")
    survivor = Account.objects.get(pk=world.survivor.pk)
    assert (survivor.phone, survivor.tax_id) == ("", "GB123456789")


@pytest.mark.django_db
def test_a_person_without_the_merge_permission_changes_nothing(make_user):
    # given
    world = helpers.world()
    before = database_snapshot()
    clerk = helpers.Actor.person(make_user("sam", role="sales_ops"))
    # when
    with pytest.raises(PermissionDenied):
        md.merge_request(survivor=world.survivor, loser=world.loser, actor=clerk, reason=REASON)
    # then
    assert database_snapshot() == before


@pytest.mark.django_db
def test_a_merged_account_cannot_be_merged_again(make_user):
    # given
    world = helpers.world()
    actor = helpers.steward(make_user)
    third = factories.account()
    md.merge_request(survivor=world.survivor, loser=world.loser, actor=actor, reason=REASON)
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        md.merge_request(
            survivor=third, loser=Account.objects.get(pk=world.loser.pk), actor=actor,
            reason=REASON,
        )  # fmt: skip
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.STATE,
        f"{world.loser.enterprise_id} is merged; only active accounts merge",
    )
    assert database_snapshot() == before


@pytest.mark.django_db
@override_settings(TANDEM_MERGE_REQUIRES_APPROVAL=True)
def test_with_maker_checker_a_merge_waits_for_another_steward(make_user):
    # given
    world = helpers.world()
    maker = helpers.steward(make_user, "maker")
    checker = helpers.steward(make_user, "checker")
    before = helpers.reference_snapshot()
    # when
    merge = md.merge_request(survivor=world.survivor, loser=world.loser, actor=maker,
                             reason=REASON)  # fmt: skip
    # then: nothing moved yet, and the maker cannot approve
    assert merge.state == MergeState.REQUESTED
    assert helpers.reference_snapshot() == before
    with pytest.raises(PermissionDenied):
        md.merge_approve(merge=merge, actor=maker, reason="looks right")
    assert helpers.reference_snapshot() == before
    # when
    md.merge_approve(merge=merge, actor=checker, reason="checked the tax ids")
    # then
    merge.refresh_from_db()
    assert (merge.state, merge.approved_by_id) == (MergeState.MERGED, checker.user.pk)
    assert Account.objects.get(pk=world.loser.pk).status == AccountStatus.MERGED


@pytest.mark.django_db
def test_the_database_refuses_a_merge_approved_by_its_requester(make_user):
    # given
    world = helpers.world()
    maker = helpers.steward(make_user, "maker")
    with override_settings(TANDEM_MERGE_REQUIRES_APPROVAL=True):
        merge = md.merge_request(survivor=world.survivor, loser=world.loser, actor=maker,
                                 reason=REASON)  # fmt: skip
    # when / then
    with pytest.raises(IntegrityError), transaction.atomic():
        MergeRecord.objects.filter(pk=merge.pk).update(approved_by=maker.user)


@pytest.mark.django_db
def test_a_merge_of_two_crm_accounts_is_queued_for_the_crm(
    make_user, django_capture_on_commit_callbacks
):
    # given
    world = helpers.world()
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        merge = md.merge_request(survivor=world.survivor, loser=world.loser,
                                 actor=helpers.steward(make_user), reason=REASON)  # fmt: skip
    # then
    assert merge.push_state == PushState.PENDING
    # the CRM push, and the first step of the survivor's update for the ERP and billing
    assert [callback.__qualname__.split(".")[0] for callback in callbacks] == [
        "CrmMergePush",
        "_enqueue",
    ]
    assert WorkflowRun.objects.get().subject_id == world.survivor.enterprise_id


@pytest.mark.django_db
def test_a_long_reason_is_kept_in_full_on_the_merge_and_cut_to_fit_in_history(make_user):
    # given
    world = helpers.world()
    reason = "same VAT number, same address, the CRM record was keyed by hand " * 3
    # when
    merge = md.merge_request(
        survivor=world.survivor, loser=world.loser, actor=helpers.steward(make_user),
        reason=reason,
    )  # fmt: skip
    # then
    assert merge.reason == reason
    loser = Account.objects.get(pk=world.loser.pk)
    assert loser.history.first().history_change_reason == reason[:99] + "…"


@pytest.mark.django_db
@override_settings(TANDEM_MERGE_REQUIRES_APPROVAL=True)
@pytest.mark.parametrize(
    ("decided", "then", "message"),
    [
        ("approve", "approve", "is merged; only a requested merge is approved"),
        ("approve", "reject", "is merged; only a requested merge is rejected"),
        ("reject", "approve", "is rejected; only a requested merge is approved"),
        ("reject", "reject", "is rejected; only a requested merge is rejected"),
    ],
)
def test_a_merge_that_is_no_longer_requested_is_not_decided_again(
    make_user, decided, then, message
):
    # given
    world = helpers.world()
    maker = helpers.steward(make_user, "maker")
    checker = helpers.steward(make_user, "checker")
    merge = md.merge_request(survivor=world.survivor, loser=world.loser, actor=maker,
                             reason=REASON)  # fmt: skip
    getattr(md, f"merge_{decided}")(merge=merge, actor=checker, reason="decided")
    before = (database_snapshot(), MergeRecord.history.count())
    # when
    with pytest.raises(Refused) as refused:
        getattr(md, f"merge_{then}")(merge=merge, actor=checker, reason="again")
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.TRANSITION,
        f"{merge} {message}",
    )
    assert (database_snapshot(), MergeRecord.history.count()) == before


@pytest.mark.django_db
def test_undoing_a_merge_twice_is_refused_and_changes_nothing(make_user):
    # given
    world = helpers.world()
    actor = helpers.steward(make_user)
    merge = md.merge_request(survivor=world.survivor, loser=world.loser, actor=actor,
                             reason=REASON)  # fmt: skip
    md.account_unmerge(merge=merge, actor=actor, reason="not the same company")
    before = (database_snapshot(), MergeRecord.history.count())
    # when
    with pytest.raises(Refused) as refused:
        md.account_unmerge(merge=merge, actor=actor, reason="again")
    # then
    assert (refused.value.kind, refused.value.message) == (
        Refused.Kind.STATE,
        f"{merge} is unmerged; only a completed merge is undone",
    )
    assert (database_snapshot(), MergeRecord.history.count()) == before
