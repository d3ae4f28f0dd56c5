"""Each role's home page: what is assigned to me, what waits for my approval (with the
navigation's badge), what is overdue, what is new since my last visit, and what my role may
and may not do; the data steward's master-data queue and duplicate pairs."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.problems import Category
from exceptions import services
from exceptions.models import OperationalException, ReplayKind
from masterdata.models import DuplicateCandidate
from tests import factories
from tests.exceptions.helpers import raise_exception


def section(page: str, name: str) -> str:
    found = re.search(
        rf'<section class="card" id="{name}" data-count="(\d+)">(.*?)</section>', page, re.S
    )
    assert found is not None, name
    return found[1] + " " + found[2]


def exc_ids(text: str) -> list[str]:
    return re.findall(r">(EXC-\d+)</a>", text)


@pytest.mark.django_db
def test_the_home_page_lists_what_is_assigned_to_me_overdue_and_new_since_my_last_visit(
    client, make_user, test_flow
):
    # given: a sales ops person with one exception assigned, one of the team's overdue
    sam = make_user("sam", role="sales_ops")
    mine = raise_exception(category=Category.VALIDATION)
    services.exception_assign(exception=mine, assignee=sam, actor=Actor.person(sam), reason="mine")
    late = raise_exception(category=Category.VALIDATION)
    OperationalException.objects.filter(pk=late.pk).update(  # test setup: long ago
        created_at=timezone.now() - dt.timedelta(days=2),
        sla_due_at=timezone.now() - dt.timedelta(days=1),
    )
    raise_exception(category=Category.TAX)  # finance's, not sales ops'
    client.force_login(sam)
    first = client.get(reverse("home")).content.decode()
    # when: something new arrives for the team, and sam comes back
    fresh = raise_exception(category=Category.VALIDATION)
    again = client.get(reverse("home")).content.decode()
    # then
    assert section(first, "assigned").split()[0] == "1"
    assert exc_ids(section(first, "assigned")) == [f"EXC-{mine.pk}"]
    assert exc_ids(section(first, "overdue")) == [f"EXC-{late.pk}"]
    assert "Your first visit" in section(first, "new")
    assert exc_ids(section(again, "new")) == [f"EXC-{fresh.pk}"]
    assert "Your role may read orders" in again
    assert "It may not resolve or ignore exceptions" in again


@pytest.mark.django_db
def test_the_auditor_is_told_the_console_is_read_only(client, make_user):
    # given
    client.force_login(make_user("audrey", role="auditor"))
    # when
    page = client.get(reverse("home")).content.decode()
    # then
    assert "It may not change anything: the console is read-only for you." in page


@pytest.mark.django_db
def test_replays_waiting_for_my_approval_are_listed_with_a_badge_in_the_navigation(
    client, make_user, test_flow
):
    # given: sales ops asked for a replay; finance ops decides
    exc = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    sam = make_user("sam", role="sales_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exc.step_run, actor=Actor.person(sam), reason="fixed"
    )
    fiona = make_user("fiona", role="finance_ops")
    # when
    client.force_login(fiona)
    page = client.get(reverse("home")).content.decode()
    badge = client.get(reverse("waiting-badge")).content.decode()
    client.force_login(sam)
    own_badge = client.get(reverse("waiting-badge")).content.decode()
    # then
    assert f'href="{reverse("replay-detail", args=[replay.pk])}">RPL-{replay.pk}</a>' in section(
        page, "approvals"
    )
    assert f'hx-get="{reverse("waiting-badge")}"' in page
    assert badge.strip() == (
        '<a class="badge bad" href="/#approvals" data-waiting="1">1 waiting for you</a>'
    )
    assert own_badge.strip() == ""  # nobody approves their own request


@pytest.mark.django_db
def test_the_data_stewards_home_lists_master_data_exceptions_and_duplicate_pairs(
    client, make_user, test_flow
):
    # given
    master = raise_exception(category=Category.MASTER_DATA)
    raise_exception(category=Category.DOWNSTREAM_API)
    a, b = sorted((factories.account(), factories.account()), key=lambda x: x.pk)
    pair = DuplicateCandidate.objects.create(
        account_a=a, account_b=b, score=Decimal("0.910"), evidence={}, fingerprint="f" * 64,
        detected_at=timezone.now(),
    )  # fmt: skip
    client.force_login(make_user("stella", role="data_steward"))
    # when
    page = client.get(reverse("home")).content.decode()
    # then
    assert exc_ids(section(page, "master-data")) == [f"EXC-{master.pk}"]
    duplicates = section(page, "duplicates")
    assert duplicates.split()[0] == "1"
    assert f'href="{reverse("duplicate-detail", args=[pair.pk])}"' in duplicates
    assert f"{a.enterprise_id} ↔ {b.enterprise_id}" in duplicates
