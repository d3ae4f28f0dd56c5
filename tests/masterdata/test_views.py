"""The stewards' pages: the duplicate queue, the comparison, the merge page, the merge log."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from masterdata.models import (
    Account,
    AccountStatus,
    CandidateStatus,
    DuplicateCandidate,
    MergeRecord,
    MergeState,
)
from masterdata.services import duplicates
from masterdata.services import merges as md
from q2c.models import Order
from tests import factories
from tests.masterdata import helpers
from tests.q2c.helpers import database_snapshot


def candidate(a: Account, b: Account, score: str = "0.950") -> DuplicateCandidate:
    first, second = sorted((a, b), key=lambda account: account.pk)
    return DuplicateCandidate.objects.create(
        account_a=first, account_b=second, score=Decimal(score),
        evidence={"name": {"result": "close", "similarity": 0.93, "weight": 2.9},
                  "tax_id": {"result": "same", "weight": 6.0}},
        fingerprint="f" * 64, detected_at=timezone.now(),
    )  # fmt: skip


@pytest.mark.django_db
def test_the_queue_shows_open_pairs_best_first_with_a_pinned_query_count(
    client, make_user, django_assert_num_queries
):
    # given
    pairs = [candidate(factories.account(), factories.account(), f"0.{90 - n}0") for n in range(6)]
    dismissed = candidate(factories.account(), factories.account(), "0.990")
    dismissed.status = CandidateStatus.DISMISSED
    dismissed.save()
    client.force_login(make_user("stella", role="data_steward"))
    # when: session, user, permissions (2), the role for the navigation, count, page, the
    # steward's saved views of the queue
    with django_assert_num_queries(8):
        response = client.get(reverse("duplicate-list"))
    # then
    assert response.status_code == 200
    assert [c.pk for c in response.context["page"]] == [pair.pk for pair in pairs]
    assert "tax_id: same" in response.content.decode()


@pytest.mark.django_db
def test_the_queue_filters_by_name_and_renders_the_rows_partial_for_htmx(client, make_user):
    # given
    wanted = candidate(factories.account(legal_name="Zephyr Robotics Ltd"), factories.account())
    other = candidate(factories.account(), factories.account())
    client.force_login(make_user("stella", role="auditor"))
    # when
    response = client.get(reverse("duplicate-list"), {"q": "zephyr"}, HTTP_HX_REQUEST="true")
    # then
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="rows">')
    assert f"DUP-{wanted.pk}<" in body
    assert f"DUP-{other.pk}<" not in body


@pytest.mark.django_db
def test_the_comparison_shows_both_accounts_and_the_evidence(client, make_user):
    # given
    a = factories.account(legal_name="Acme Systems Ltd", tax_id="GB123456789")
    b = factories.account(legal_name="ACME Systems Limited", tax_id="GB 123 456 789")
    pair = candidate(a, b)
    client.force_login(make_user("stella", role="data_steward"))
    # when
    response = client.get(reverse("duplicate-detail", args=[pair.pk]))
    # then
    body = response.content.decode()
    assert response.status_code == 200
    assert "Acme Systems Ltd" in body and "ACME Systems Limited" in body
    assert [row["same"] for row in response.context["rows"]][:2] == [False, False]
    assert response.context["can_act"] is True


@pytest.mark.django_db
def test_a_steward_dismisses_a_pair_with_a_reason(client, make_user):
    # given
    pair = candidate(factories.account(), factories.account())
    user = make_user("stella", role="data_steward")
    client.force_login(user)
    # when
    response = client.post(
        reverse("duplicate-dismiss", args=[pair.pk]), {"reason": "two subsidiaries"}
    )
    # then
    assert response.status_code == 302
    pair.refresh_from_db()
    assert (pair.status, pair.decided_by_id, pair.decision_reason) == (
        CandidateStatus.DISMISSED,
        user.pk,
        "two subsidiaries",
    )
    assert pair.history.first().history_user_id == user.pk


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["auditor", "sales_ops"])
def test_dismissing_is_refused_to_those_who_may_not_merge(client, make_user, role):
    # given
    pair = candidate(factories.account(), factories.account())
    client.force_login(make_user("reader", role=role))
    before = database_snapshot()
    # when
    response = client.post(reverse("duplicate-dismiss", args=[pair.pk]), {"reason": "x"})
    # then
    assert response.status_code == 403
    assert database_snapshot() == before


@pytest.mark.django_db
def test_the_merge_page_previews_what_moves_and_the_surviving_values(client, make_user):
    # given
    world = helpers.world()
    client.force_login(make_user("stella", role="data_steward"))
    # when
    response = client.get(
        reverse("merge-new"),
        {"survivor": world.survivor.enterprise_id, "loser": world.loser.enterprise_id},
    )
    # then
    assert response.status_code == 200
    moves = {kind: len(rows) for kind, rows in response.context["moves"]}
    assert moves == {
        "quotes": 1, "orders": 1, "contracts": 1, "invoices": 1, "credit notes": 1,
        "payments": 1, "crosswalk entries": 1,
    }  # fmt: skip
    keep = {item.field: item.keep for item in response.context["fields"]}
    assert keep["phone"] == "loser"  # the survivor has none
    assert 'name="keep_legal_name" value="loser"' in response.content.decode()


@pytest.mark.django_db
def test_merging_and_unmerging_from_the_pages_moves_the_orders_and_back(client, make_user):
    # given
    world = helpers.world()
    pair = candidate(world.survivor, world.loser)
    user = make_user("stella", role="data_steward")
    client.force_login(user)
    loser_orders = list(Order.objects.filter(account=world.loser).values_list("pk", flat=True))
    # when
    response = client.post(
        reverse("merge-new"),
        {
            "survivor": world.survivor.enterprise_id, "loser": world.loser.enterprise_id,
            "candidate": pair.pk, "keep_legal_name": "survivor", "reason": "one tax id",
        },
    )  # fmt: skip
    # then
    merge = MergeRecord.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"/merges/{merge.pk}/")
    assert set(Order.objects.filter(account=world.survivor).values_list("pk", flat=True)) >= set(
        loser_orders
    )
    pair.refresh_from_db()
    assert pair.status == CandidateStatus.MERGED
    detail = client.get(reverse("merge-detail", args=[merge.pk]))
    assert detail.context["can_unmerge"] is True
    # when
    client.post(reverse("merge-unmerge", args=[merge.pk]), {"reason": "wrong merge"})
    # then
    merge.refresh_from_db()
    assert merge.state == MergeState.UNMERGED
    assert list(Order.objects.filter(account=world.loser).values_list("pk", flat=True)) == (
        loser_orders
    )
    assert Account.objects.get(pk=world.loser.pk).status == AccountStatus.ACTIVE


@pytest.mark.django_db
def test_a_merge_without_a_reason_is_refused_and_changes_nothing(client, make_user):
    # given
    world = helpers.world()
    client.force_login(make_user("stella", role="data_steward"))
    before = database_snapshot()
    # when
    response = client.post(
        reverse("merge-new"),
        {"survivor": world.survivor.enterprise_id, "loser": world.loser.enterprise_id,
         "reason": " "},
    )  # fmt: skip
    # then
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "a reason is required for this change"
    ]
    assert database_snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["auditor", "finance_ops"])
def test_the_merge_page_is_refused_to_those_who_may_not_merge(client, make_user, role):
    # given
    world = helpers.world()
    client.force_login(make_user("reader", role=role))
    # when
    response = client.get(
        reverse("merge-new"),
        {"survivor": world.survivor.enterprise_id, "loser": world.loser.enterprise_id},
    )
    # then
    assert response.status_code == 403


@pytest.mark.django_db
def test_the_account_page_shows_crosswalk_aliases_and_merge_history(client, make_user):
    # given
    world = helpers.world()
    merge = md.merge_request(
        survivor=world.survivor, loser=world.loser, actor=helpers.steward(make_user),
        reason="one tax id",
    )  # fmt: skip
    client.force_login(make_user("audrey", role="auditor"))
    # when
    response = client.get(reverse("account-detail", args=[world.survivor.enterprise_id]))
    # then
    assert response.status_code == 200
    assert [(x.system, x.external_id) for x in response.context["crosswalk"]] == [
        ("crm", "001L"),
        ("crm", "001S"),
    ]
    assert [a.alias for a in response.context["aliases"]] == [world.loser.enterprise_id]
    assert [m.pk for m in response.context["merges"]] == [merge.pk]


@pytest.mark.django_db
def test_the_merge_log_lists_merges_newest_first(client, make_user, django_assert_num_queries):
    # given
    actor = helpers.steward(make_user)
    merges = [
        md.merge_request(
            survivor=factories.account(), loser=factories.account(), actor=actor, reason="duplicate"
        )
        for _ in range(3)
    ]
    client.force_login(make_user("audrey", role="auditor"))
    # when (the seventh query reads audrey's saved views of the log)
    with django_assert_num_queries(8):
        response = client.get(reverse("merge-list"))
    # then
    assert [m.pk for m in response.context["page"]] == [m.pk for m in reversed(merges)]


@pytest.mark.django_db
def test_unmerge_from_the_page_moves_back_only_the_picked_newer_records(client, make_user):
    # given
    world = helpers.world()
    actor = helpers.steward(make_user)
    merge = md.merge_request(
        survivor=world.survivor, loser=world.loser, actor=actor, reason="one tax id"
    )
    survivor = Account.objects.get(pk=world.survivor.pk)
    stays, picked = factories.order(account=survivor), factories.order(account=survivor)
    client.force_login(actor.user)
    page = client.get(reverse("merge-detail", args=[merge.pk]))
    assert [key for key, _ in page.context["attached_since"]] == [
        f"q2c.order:{stays.pk}",
        f"q2c.order:{picked.pk}",
    ]
    # when
    client.post(
        reverse("merge-unmerge", args=[merge.pk]),
        {"reason": "wrong merge", "also_move": [f"q2c.order:{picked.pk}", "q2c.order:999999"]},
    )
    # then
    assert Order.objects.get(pk=stays.pk).account_id == world.survivor.pk
    assert Order.objects.get(pk=picked.pk).account_id == world.loser.pk


@pytest.mark.django_db
def test_a_bug_behind_a_stewards_action_is_a_500_not_a_message(client, make_user, monkeypatch):
    # given
    pair = candidate(factories.account(), factories.account())
    client.force_login(make_user("stella", role="data_steward"))
    before = database_snapshot()

    def broken(**_: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(duplicates, "candidate_dismiss", broken)
    client.raise_request_exception = False
    # when
    response = client.post(
        reverse("duplicate-dismiss", args=[pair.pk]), {"reason": "two subsidiaries"}
    )
    # then
    assert response.status_code == 500
    assert database_snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("asked", ["requested", "awaiting_approval"])
def test_a_merge_state_with_no_merge_says_so_and_offers_every_merge(client, make_user, asked):
    # given: merges exist, none awaiting approval
    actor = helpers.steward(make_user)
    md.merge_request(
        survivor=factories.account(), loser=factories.account(), actor=actor, reason="duplicate"
    )
    client.force_login(make_user("audrey", role="auditor"))
    # when
    response = client.get(reverse("merge-list"), {"state": asked})
    # then
    page = response.content.decode()
    assert response.context["state"] == "requested"
    assert list(response.context["page"]) == []
    assert "No merges yet." not in page
    assert "No merge is awaiting approval." in page
    assert f'<a href="{reverse("merge-list")}">Show every merge</a>' in page


@pytest.mark.django_db
def test_an_unknown_merge_state_is_named_and_every_merge_shown(client, make_user):
    # given
    actor = helpers.steward(make_user)
    merge = md.merge_request(
        survivor=factories.account(), loser=factories.account(), actor=actor, reason="duplicate"
    )
    client.force_login(make_user("audrey", role="auditor"))
    # when
    response = client.get(reverse("merge-list"), {"state": "pending"})
    # then
    assert [m.pk for m in response.context["page"]] == [merge.pk]
    assert "“pending” is not a merge state; showing every merge." in response.content.decode()
