"""The queue's assign, comment and bulk actions, and its severity/assignee/age filters."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.problems import Category
from exceptions.models import ExceptionComment, ExceptionState, OperationalException
from exceptions.services import exception_ignore
from orchestration.workflows.errors import StepFailed
from tests.exceptions.helpers import ADMIN, drain, planned, raise_exception, user_for


def states(*excs: OperationalException) -> list[tuple[str, str]]:
    return [
        (e.state, e.resolution_code)
        for e in OperationalException.objects.filter(pk__in=[x.pk for x in excs]).order_by("pk")
    ]


@pytest.mark.django_db
def test_assign_to_me_records_the_assignee_with_history(client):
    # given
    exc = raise_exception()
    user = user_for("sales_ops")
    client.force_login(user)
    # when
    response = client.post(
        reverse("exception-assign", args=[exc.pk]), {"assignee": "me", "reason": "mine now"}
    )
    # then
    assert response.status_code == 302
    exc.refresh_from_db()
    assert exc.assignee == user
    newest = exc.history.order_by("-history_id").values_list(
        "assignee_id", "history_user__username", "history_change_reason"
    )[0]
    assert newest == (user.pk, "user-sales_ops", "mine now")


@pytest.mark.django_db
def test_assign_to_someone_without_a_role_is_refused_and_nothing_changes(client):
    # given
    exc = raise_exception()
    outsider = user_for("no role")
    client.force_login(user_for("finance_ops"))
    # when
    client.post(reverse("exception-assign", args=[exc.pk]), {"assignee": str(outsider.pk)})
    # then
    exc.refresh_from_db()
    assert exc.assignee is None
    assert exc.history.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", ["exception-assign", "exception-comment"])
def test_the_auditor_may_neither_assign_nor_comment(client, url_name):
    # given
    exc = raise_exception()
    client.force_login(user_for("auditor"))
    # when
    response = client.post(reverse(url_name, args=[exc.pk]), {"assignee": "me", "body": "hi"})
    # then
    assert response.status_code == 403
    exc.refresh_from_db()
    assert (exc.assignee, ExceptionComment.objects.count()) == (None, 0)


@pytest.mark.django_db
def test_a_comment_is_kept_with_its_author_and_shown_on_the_detail_page(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("data_steward"))
    # when
    client.post(reverse("exception-comment", args=[exc.pk]), {"body": "  called the customer  "})
    page = client.get(reverse("exception-detail", args=[exc.pk])).content.decode()
    # then
    comment = ExceptionComment.objects.get()
    assert (comment.exception, comment.author.username, comment.body) == (
        exc,
        "user-data_steward",
        "called the customer",
    )
    assert comment.history.values_list("history_user__username", "history_change_reason")[0] == (
        "user-data_steward",
        "comment added",
    )
    assert "called the customer" in page


@pytest.mark.django_db
def test_an_empty_comment_is_refused(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("data_steward"))
    # when
    client.post(reverse("exception-comment", args=[exc.pk]), {"body": "   "})
    # then
    assert ExceptionComment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, expected",
    [
        ({"severity": "medium"}, ["medium"]),
        ({"assignee": "me"}, ["mine"]),
        ({"assignee": "none"}, ["medium", "old"]),
        ({"age": "24h"}, ["old"]),
        ({"overdue": "1"}, ["old"]),
    ],
)
def test_the_list_filters_by_severity_assignee_age_and_overdue(client, params, expected):
    # given
    me = user_for("finance_ops")
    raised = {"old": raise_exception(), "mine": raise_exception()}
    raised["medium"] = raise_exception()
    old = raised["old"]
    old.created_at = timezone.now() - dt.timedelta(days=2)
    old.sla_due_at = timezone.now() - dt.timedelta(days=1)
    old.save()
    raised["medium"].severity = "medium"
    raised["medium"].save()
    raised["mine"].assignee = me
    raised["mine"].save()
    client.force_login(me)
    # when
    response = client.get(reverse("exception-list"), params)
    # then
    assert sorted(exc.pk for exc in response.context["page"]) == sorted(
        raised[name].pk for name in expected
    )


# --- Bulk -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bulk_first_asks_for_confirmation_and_changes_nothing(client):
    # given
    excs = [raise_exception() for _ in range(2)]
    client.force_login(user_for("finance_ops"))
    # when
    response = client.post(
        reverse("exception-bulk"), {"action": "resolve", "pk": [e.pk for e in excs]}
    )
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Resolve: 2 exceptions</h1>" in page
    assert 'data-action="bulk-confirm"' in page
    assert states(*excs) == [("open", ""), ("open", "")]


@pytest.mark.django_db
def test_bulk_resolve_reports_each_done_and_each_failed_with_why(client):
    # given
    excs = [raise_exception() for _ in range(3)]
    exception_ignore(exception=excs[1], actor=Actor.system("worker"), reason="dup")
    client.force_login(user_for("finance_ops"))
    # when
    response = client.post(
        reverse("exception-bulk"),
        {"action": "resolve", "confirm": "1", "pk": [e.pk for e in excs] + [999999],
         "code": "fixed_at_source", "reason": "fixed in CPQ"},
    )  # fmt: skip
    # then
    report = response.context["report"]
    assert (report.done, report.failed) == (2, 2)
    assert [(item.pk, item.ok, item.message) for item in report.items] == [
        (excs[0].pk, True, "resolved (fixed_at_source)"),
        (excs[1].pk, False,
         f"EXC-{excs[1].pk} master_data: customer rejected: tax id invalid cannot 'resolve' while "
         "'ignored' (allowed from: open, retrying)"),
        (excs[2].pk, True, "resolved (fixed_at_source)"),
        (999999, False, "no such exception"),
    ]  # fmt: skip
    assert "<h1>Resolve: 2 done, 2 failed</h1>" in response.content.decode()
    assert states(*excs) == [
        ("resolved", "fixed_at_source"),
        ("ignored", "ignored"),
        ("resolved", "fixed_at_source"),
    ]


@pytest.mark.django_db
def test_bulk_retry_of_a_whole_group_retries_every_open_member(client):
    # given
    group = [raise_exception() for _ in range(3)]
    other = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    client.force_login(user_for("integration_support"))
    # when
    response = client.post(
        reverse("exception-bulk"),
        {"group": f"retry:{group[0].fingerprint}", "confirm": "1", "reason": "erp back"},
    )
    # then
    report = response.context["report"]
    assert [(item.pk, item.ok) for item in report.items] == [(e.pk, True) for e in group]
    assert states(*group, other) == [("retrying", "")] * 3 + [("open", "")]


@pytest.mark.django_db
def test_bulk_retry_reports_queued_then_each_real_outcome_with_the_new_error(client):
    # given: three failed steps; two of them will fail again on the retry
    excs = [raise_exception() for _ in range(3)]
    ok, again, again_too = excs
    for exc, error in ((again, "tax id still invalid"), (again_too, "customer blocked")):
        planned[(exc.order.enterprise_id, "create_customer")] = [
            StepFailed(error, category=Category.MASTER_DATA)
        ]
    client.force_login(user_for("integration_support"))
    # when: the retry is confirmed
    response = client.post(
        reverse("exception-bulk"),
        {"action": "retry", "pk": [e.pk for e in excs], "confirm": "1", "reason": "fixed"},
    )
    # then: the report says queued, not done, and polls for the outcome
    page = response.content.decode()
    assert "<h1>Retry the failed step: 3 queued</h1>" in page
    assert re.findall(r'data-outcome="(\w+)"', page) == ["pending"] * 3
    assert 'hx-trigger="every 2s"' in page
    poll = re.search(r'hx-get="([^"]+)"', page.split('id="outcome"')[1])[1].replace("&amp;", "&")
    assert poll == reverse("exception-bulk-outcome") + "?" + "&".join(f"pk={e.pk}" for e in excs)
    # when: the worker runs the steps, then the report polls
    for exc in excs:
        drain(exc.workflow_run)
    polled = client.get(poll)
    # then: one succeeded, two failed again with their new error, and polling stops
    rows = polled.content.decode()
    found = re.findall(
        r'data-outcome="(\w+)" data-pk="(\d+)">.*?<td class="num">(\d+)</td><td>([^<]*)', rows
    )
    assert found == [
        ("succeeded", str(ok.pk), "2", ""),
        ("failed", str(again.pk), "2", "tax id still invalid"),
        ("failed", str(again_too.pk), "2", "customer blocked"),
    ]
    assert "1 succeeded, 2 failed again, 0 still running" in rows
    assert 'data-settled="1"' in rows
    assert "hx-trigger" not in rows


@pytest.mark.django_db
def test_the_bulk_outcome_is_read_only_for_the_queues_readers(client):
    # given
    exc = raise_exception()
    client.force_login(user_for("no role"))
    # when
    response = client.get(reverse("exception-bulk-outcome"), {"pk": exc.pk})
    # then
    assert response.status_code == 403


@pytest.mark.django_db
def test_bulk_assign_gives_the_selection_to_one_person(client):
    # given
    excs = [raise_exception() for _ in range(2)]
    steward = user_for("data_steward")
    client.force_login(user_for("integration_support"))
    # when
    response = client.post(
        reverse("exception-bulk"),
        {"action": "assign", "confirm": "1", "pk": [e.pk for e in excs],
         "assignee": str(steward.pk), "reason": "master data"},
    )  # fmt: skip
    # then
    assert [item.message for item in response.context["report"].items] == [
        "assigned to user-data_steward"
    ] * 2
    assert set(OperationalException.objects.values_list("assignee_id", flat=True)) == {steward.pk}


@pytest.mark.django_db
@pytest.mark.parametrize("who, action", [("sales_ops", "resolve"), ("auditor", "retry")])
def test_bulk_without_the_action_permission_is_403_and_changes_nothing(client, who, action):
    # given
    exc = raise_exception()
    client.force_login(user_for(who))
    # when
    response = client.post(
        reverse("exception-bulk"),
        {"action": action, "confirm": "1", "pk": [exc.pk], "code": "duplicate", "reason": "x"},
    )
    # then
    assert response.status_code == 403
    assert states(exc) == [("open", "")]


@pytest.mark.django_db
def test_the_list_offers_bulk_only_for_the_actions_the_role_may_run(client):
    # given
    raise_exception()
    client.force_login(user_for("sales_ops"))
    # when
    page = client.get(reverse("exception-list")).content.decode()
    # then
    bulk = re.search(r'<form id="bulk".*?</form>', page, re.S)[0]
    assert re.findall(r'<option value="(\w+)">', bulk) == ["retry", "assign"]


@pytest.mark.django_db
def test_admin_sees_group_bulk_buttons_in_the_grouped_view(client):
    # given
    exc = raise_exception()
    client.force_login(user_for(ADMIN))
    # when
    page = client.get(reverse("exception-list"), {"view": "grouped"}).content.decode()
    # then
    assert re.findall(r'name="group" value="([\w:]+)"', page) == [
        f"{action}:{exc.fingerprint}" for action in ("retry", "assign", "resolve")
    ]
    assert exc.state == ExceptionState.OPEN


@pytest.mark.django_db
def test_a_single_retry_shows_its_live_outcome_on_the_exceptions_page(client):
    # given: an exception retried from its page
    exc = raise_exception()
    client.force_login(user_for("sales_ops"))
    client.post(reverse("exception-retry", args=[exc.pk]), {"reason": "fixed in CPQ"})
    # when
    page = client.get(reverse("exception-detail", args=[exc.pk])).content.decode()
    # then: the page loads the retry's outcome, which polls until the step settles
    outcome = f"{reverse('exception-bulk-outcome')}?pk={exc.pk}"
    assert f'hx-get="{outcome}" hx-trigger="load"' in page
    polled = client.get(outcome).content.decode()
    assert re.findall(r'data-outcome="(\w+)"', polled) == ["pending"]
    assert 'hx-trigger="every 2s"' in polled
