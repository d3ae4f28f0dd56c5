"""A master-data exception, the duplicate pair of its accounts and their merge link to each
other both ways."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.problems import Category
from masterdata.models import DuplicateCandidate
from masterdata.services import merges
from tests import factories
from tests.exceptions.helpers import raise_exception, user_for


@pytest.mark.django_db
@override_settings(TANDEM_MERGE_REQUIRES_APPROVAL=True)
def test_an_ambiguous_customer_links_to_its_duplicate_pair_and_merge_and_back(client):
    # given: an exception naming two accounts, their duplicate pair, and a merge requested
    a, b = sorted((factories.account(), factories.account()), key=lambda x: x.pk)
    exc = raise_exception(
        category=Category.MASTER_DATA, message="customer matches several accounts",
        candidates=[a.enterprise_id, b.enterprise_id],
    )  # fmt: skip
    other = raise_exception(category=Category.MASTER_DATA, candidates=["ACC-999999"])
    pair = DuplicateCandidate.objects.create(
        account_a=a, account_b=b, score=Decimal("0.910"), evidence={}, fingerprint="f" * 64,
        detected_at=timezone.now(),
    )  # fmt: skip
    steward = user_for("data_steward")
    assert settings.TANDEM_MERGE_REQUIRES_APPROVAL
    merge = merges.merge_request(
        survivor=a, loser=b, candidate=pair, actor=Actor.person(steward), reason="one company"
    )
    client.force_login(steward)
    # when
    detail = client.get(reverse("exception-detail", args=[exc.pk])).content.decode()
    pair_page = client.get(reverse("duplicate-detail", args=[pair.pk])).content.decode()
    merge_page = client.get(reverse("merge-detail", args=[merge.pk])).content.decode()
    naming = client.get(
        reverse("exceptions-naming"), {"account": [a.enterprise_id, b.enterprise_id]}
    ).content.decode()
    # then: exception → pair and merge
    assert f'href="{reverse("duplicate-detail", args=[pair.pk])}">DUP-{pair.pk}</a>' in detail
    assert f'href="{reverse("merge-detail", args=[merge.pk])}">MRG-{merge.pk}</a>' in detail
    # ... pair and merge → the exceptions naming their accounts (loaded by htmx)
    query = f"?account={a.enterprise_id}&amp;account={b.enterprise_id}"
    assert f'hx-get="{reverse("exceptions-naming")}{query}"' in pair_page
    assert f'hx-get="{reverse("exceptions-naming")}{query}"' in merge_page
    assert f'href="{reverse("duplicate-detail", args=[pair.pk])}">DUP-{pair.pk}</a>' in merge_page
    assert f">EXC-{exc.pk}</a>" in naming
    assert f">EXC-{other.pk}</a>" not in naming


@pytest.mark.django_db
def test_the_naming_list_needs_the_queues_permission(client):
    # given
    client.force_login(user_for("no role"))
    # when
    response = client.get(reverse("exceptions-naming"), {"account": "ACC-1"})
    # then
    assert response.status_code == 403
