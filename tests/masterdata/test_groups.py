"""Groups of duplicates: stored by detection, reviewed and merged as one; sites kept apart."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from masterdata.models import (
    Account,
    AccountStatus,
    CandidatePattern,
    DuplicateCandidate,
    MergeRecord,
    MergeState,
)
from masterdata.services import duplicates as md_duplicates
from masterdata.services import merges as md_merges
from tests import factories
from tests.console.test_permission_matrix import user_for
from tests.masterdata import helpers


def one_customer_three_times() -> list[Account]:
    return [
        factories.account(
            legal_name="Kestrel Data Systems Ltd", tax_id="GB123456789",
            address_line1="12 High Street", postcode="LS1 4AP", phone="+44 113 496 0000",
        ),
        factories.account(
            legal_name="KESTREL DATA SYSTEMS LIMITED", tax_id="GB 123 456 789",
            address_line1="12, High St.", postcode="LS14AP",
        ),
        factories.account(
            legal_name="Kestrel Data Sys", address_line1="12 High St", postcode="LS1 4AP",
            phone="0113 496 0000",
        ),
    ]  # fmt: skip


def two_sites() -> list[Account]:
    """One organisation's two sites: the same name, tax id and domain; their own address
    and phone."""
    return [
        factories.account(
            legal_name="Juniper Freight GmbH", country="DE", currency="EUR",
            tax_id="DE811122233", domain="juniper-freight.de", address_line1="Hafenstraße 4",
            city="Hamburg", postcode="20457", phone="+49 40 1234 5678",
        ),
        factories.account(
            legal_name="Juniper Freight GmbH", country="DE", currency="EUR",
            tax_id="DE811122233", domain="juniper-freight.de",
            address_line1="Bahnhofstraße 88", city="Köln", postcode="50667",
            phone="+49 221 9876 5432",
        ),
    ]  # fmt: skip


@pytest.mark.django_db
def test_detection_stores_the_group_and_flags_the_sites(system_actor):
    # given
    first, second, third = one_customer_three_times()
    site_a, site_b = two_sites()
    factories.account(legal_name="Zephyr Robotics Ltd")
    # when
    summary = md_duplicates.duplicates_detect(actor=system_actor)
    # then
    stored = {
        (c.account_a_id, c.account_b_id): (c.pattern, c.cluster)
        for c in DuplicateCandidate.objects.all()
    }
    assert stored == {
        (first.pk, second.pk): (CandidatePattern.DUPLICATE, first.pk),
        (first.pk, third.pk): (CandidatePattern.DUPLICATE, first.pk),
        (second.pk, third.pk): (CandidatePattern.DUPLICATE, first.pk),
        (site_a.pk, site_b.pk): (CandidatePattern.SITES, None),
    }
    assert (summary.found, summary.sites, summary.clusters) == (4, 1, 1)


@pytest.mark.django_db
def test_the_candidate_page_shows_each_fields_level_and_bits(client, system_actor):
    # given
    one_customer_three_times()
    md_duplicates.duplicates_detect(actor=system_actor)
    candidate = DuplicateCandidate.objects.order_by("pk").first()
    assert candidate is not None
    client.force_login(user_for("auditor"))
    # when
    response = client.get(reverse("duplicate-detail", args=[candidate.pk]))
    # then
    body = response.content.decode()
    assert response.status_code == 200
    assert "Match weight (probability" in body
    assert f'<th class="num">{candidate.match_weight}</th>' in body
    fields = sum(Decimal(str(item["weight"])) for item in candidate.evidence.values())
    assert response.context["prior_weight"] == candidate.match_weight - fields


@pytest.mark.django_db
def test_the_groups_page_lists_the_group_with_its_sites_apart(client, system_actor):
    # given
    accounts = one_customer_three_times()
    md_duplicates.duplicates_detect(actor=system_actor)
    client.force_login(user_for("auditor"))
    # when
    listing = client.get(reverse("duplicate-groups"))
    detail = client.get(reverse("duplicate-group", args=[accounts[0].pk]))
    # then
    (group,) = listing.context["page"]
    assert [account.pk for account in group.accounts] == [account.pk for account in accounts]
    assert detail.status_code == 200
    assert "Merge the group" not in detail.content.decode()  # auditors read only


@pytest.mark.django_db
def test_a_steward_merges_a_group_one_pair_at_a_time_with_history(client, system_actor):
    # given
    first, second, third = one_customer_three_times()
    md_duplicates.duplicates_detect(actor=system_actor)
    steward = user_for("data_steward")
    client.force_login(steward)
    # when
    response = client.post(
        reverse("duplicate-group", args=[first.pk]),
        {"survivor": first.enterprise_id, "reason": "one customer, three systems",
         "member": [first.enterprise_id, second.enterprise_id, third.enterprise_id]},
    )  # fmt: skip
    # then
    assert (response.status_code, response["Location"]) == (302, "/duplicates/groups/")
    merges = list(MergeRecord.objects.order_by("pk").values_list("survivor", "loser", "state"))
    assert merges == [
        (first.pk, second.pk, MergeState.MERGED), (first.pk, third.pk, MergeState.MERGED),
    ]  # fmt: skip
    assert sorted(Account.objects.values_list("pk", "status", "merged_into")) == [
        (first.pk, AccountStatus.ACTIVE, None),
        (second.pk, AccountStatus.MERGED, first.pk),
        (third.pk, AccountStatus.MERGED, first.pk),
    ]
    loser = Account.history.filter(id=second.pk).order_by("history_id").last()
    assert loser is not None
    assert (loser.history_user_id, loser.history_change_reason) == (
        steward.pk, "one customer, three systems"
    )  # fmt: skip


@pytest.mark.django_db
def test_a_group_merge_goes_on_past_an_account_it_cannot_merge(system_actor, make_user):
    # given
    first, second, third = one_customer_three_times()
    steward = helpers.steward(make_user)
    md_merges.merge_request(survivor=third, loser=second, actor=steward, reason="merged earlier")
    # when
    outcome = md_merges.group_merge(
        survivor=first, members=[first, second, third], actor=steward, reason="one customer"
    )
    # then
    assert [(m.survivor_id, m.loser_id) for m in outcome.merges] == [(first.pk, third.pk)]
    assert outcome.refused == [
        (second.enterprise_id, f"{second.enterprise_id} is merged; only active accounts merge")
    ]


@pytest.mark.django_db
def test_an_auditor_cannot_merge_a_group(client, system_actor):
    # given
    first, second, third = one_customer_three_times()
    md_duplicates.duplicates_detect(actor=system_actor)
    client.force_login(user_for("auditor"))
    # when
    response = client.post(
        reverse("duplicate-group", args=[first.pk]),
        {"survivor": first.enterprise_id, "reason": "x",
         "member": [second.enterprise_id, third.enterprise_id]},
    )  # fmt: skip
    # then
    assert response.status_code == 403
    assert MergeRecord.objects.count() == 0
    assert set(Account.objects.values_list("status", flat=True)) == {AccountStatus.ACTIVE}
