"""A merge pushed to the sandbox CRM over real HTTP: done, retried, or failed visibly."""

from __future__ import annotations

import pytest

from core.problems import Category
from exceptions.models import OperationalException
from masterdata.models import MergeRecord, PushState
from masterdata.services import merges as md_merges
from orchestration import merge_push as merge_push_service
from orchestration.connectors.sandbox.crm import SandboxCrm
from orchestration.models import OutboundCall
from tests import factories
from tests.masterdata import helpers
from tests.orchestration.connectors.conftest import connectors, sandbox  # noqa: F401  (fixtures)
from tests.orchestration.connectors.helpers import throttled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def crm_twins(make_user, *, loser_in_crm: bool = True) -> MergeRecord:  # type: ignore[no-untyped-def]
    crm = SandboxCrm()
    survivor_id = crm.account_create(
        name="Acme Ltd", domain="acme.example", country="GB", currency="GBP",
        idempotency_key="t-survivor",
    ).id  # fmt: skip
    loser_id = (
        crm.account_create(
            name="ACME LIMITED", domain="", country="GB", currency="GBP", idempotency_key="t-loser"
        ).id
        if loser_in_crm
        else "001000000000GONE"
    )
    survivor, loser = factories.account(), factories.account()
    helpers.link(survivor, "crm", survivor_id)
    helpers.link(loser, "crm", loser_id)
    return md_merges.merge_request(
        survivor=survivor, loser=loser, actor=helpers.steward(make_user), reason="one company"
    )


def test_the_crm_merges_the_loser_into_the_survivor(make_user, sandbox):  # noqa: F811
    # given
    merge = crm_twins(make_user)
    assert merge.push_state == PushState.PENDING
    survivor_crm, (loser_crm,) = merge_push_service._merge_crm_ids(merge)
    # when
    state = merge_push_service.merge_push(merge_id=merge.pk)
    # then
    assert state == PushState.DONE
    loser_in_crm = sandbox.get("crm", f"/accounts/{loser_crm}").json()
    assert (loser_in_crm["IsDeleted"], loser_in_crm["MasterRecordId"]) == (True, survivor_crm)
    merge.refresh_from_db()
    assert (merge.push_state, merge.push_attempts, merge.push_error) == (PushState.DONE, 1, "")
    assert list(
        OutboundCall.objects.filter(operation="account_merge").values_list("system", "status_code")
    ) == [("crm", 200)]


def test_a_refused_merge_fails_visibly_and_a_steward_can_queue_it_again(make_user, sandbox):  # noqa: F811
    # given: the loser's CRM id is unknown to the CRM
    merge = crm_twins(make_user, loser_in_crm=False)
    # when
    state = merge_push_service.merge_push(merge_id=merge.pk)
    # then
    assert state == PushState.FAILED
    (exc,) = OperationalException.objects.all()
    assert (exc.category, exc.owner_team, exc.system, exc.step, exc.context["merge"]) == (
        Category.MASTER_DATA, "data_steward", "crm", "merge_push", merge.pk,
    )  # fmt: skip
    # when
    md_merges.merge_push_retry(merge=merge, actor=helpers.steward(make_user, "two"), reason="fixed")
    # then
    merge.refresh_from_db()
    assert (merge.push_state, merge.push_attempts) == (PushState.PENDING, 0)


def test_a_throttled_crm_is_retried_and_the_last_attempt_fails_visibly(make_user, sandbox):  # noqa: F811
    # given
    merge = crm_twins(make_user)
    throttled(sandbox, "crm", 1)
    # when
    with pytest.raises(merge_push_service.MergePushRetry):
        merge_push_service.merge_push(merge_id=merge.pk)
    # then
    merge.refresh_from_db()
    assert (merge.push_state, merge.push_attempts) == (PushState.PENDING, 1)
    assert not OperationalException.objects.exists()
    # when: the task's last attempt
    state = merge_push_service.merge_push(merge_id=merge.pk, final_attempt=True)
    # then
    assert state == PushState.FAILED
    assert OperationalException.objects.get().error_class == "MergePushFailed"


def test_unmerging_after_the_crm_merged_asks_a_steward_to_restore_it_there(make_user, sandbox):  # noqa: F811
    # given: the CRM has merged the pair
    merge = crm_twins(make_user)
    _, (loser_crm,) = merge_push_service._merge_crm_ids(merge)
    assert merge_push_service.merge_push(merge_id=merge.pk) == PushState.DONE
    # when
    md_merges.account_unmerge(
        merge=merge, actor=helpers.steward(make_user, "two"), reason="two firms"
    )
    # then: Tandem cannot undo the CRM's merge; the stewards' queue says what to restore
    (exc,) = OperationalException.objects.all()
    assert (exc.error_class, exc.owner_team, exc.system, exc.context["crm_ids"]) == (
        "CrmRestoreNeeded", "data_steward", "crm", [loser_crm],
    )  # fmt: skip
    assert f"restore {loser_crm} in the crm" in exc.message
    merge.refresh_from_db()
    assert merge.push_state == PushState.DONE


def test_unmerging_before_the_push_ran_never_tells_the_crm(make_user, sandbox):  # noqa: F811
    # given: the push is still queued
    merge = crm_twins(make_user)
    _, (loser_crm,) = merge_push_service._merge_crm_ids(merge)
    # when
    md_merges.account_unmerge(
        merge=merge, actor=helpers.steward(make_user, "two"), reason="two firms"
    )
    state = merge_push_service.merge_push(merge_id=merge.pk)  # the queued task runs after all
    # then
    assert state == PushState.NOT_NEEDED
    loser_in_crm = sandbox.get("crm", f"/accounts/{loser_crm}").json()
    assert not loser_in_crm.get("IsDeleted")
    assert not OutboundCall.objects.filter(operation="account_merge").exists()
    assert not OperationalException.objects.exists()


def test_a_push_that_lands_while_the_merge_is_undone_asks_a_steward_to_restore_it(
    make_user,
    sandbox,  # noqa: F811
    monkeypatch,
):
    # given: a steward undoes the merge while the push is talking to the CRM
    merge = crm_twins(make_user)
    _, (loser_crm,) = merge_push_service._merge_crm_ids(merge)
    real_merge = SandboxCrm.account_merge

    def merge_while_a_steward_unmerges(self, **kwargs):  # type: ignore[no-untyped-def]
        answer = real_merge(self, **kwargs)  # the CRM merges the pair
        md_merges.account_unmerge(
            merge=merge, actor=helpers.steward(make_user, "two"), reason="two"
        )
        return answer

    monkeypatch.setattr(SandboxCrm, "account_merge", merge_while_a_steward_unmerges)
    # when
    state = merge_push_service.merge_push(merge_id=merge.pk)
    # then: the push finds the merge undone; the CRM's merge is put to the stewards
    assert state == PushState.NOT_NEEDED
    assert sandbox.get("crm", f"/accounts/{loser_crm}").json()["IsDeleted"] is True
    (exc,) = OperationalException.objects.all()
    assert (exc.error_class, exc.context["crm_ids"]) == ("CrmRestoreNeeded", [loser_crm])
