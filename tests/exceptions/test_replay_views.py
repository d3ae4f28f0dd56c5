"""The replay pages: list, request (with the dry run and a corrected payload), detail with the
diff, approve/reject; who may do what; query counts."""

from __future__ import annotations

import html
import json
import re
from itertools import count

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from core.audit import Actor
from core.problems import Category
from core.roles import ROLE_NAMES
from exceptions import services
from exceptions.models import OperationalException, Replay, ReplayKind, ReplayState
from tests.exceptions.helpers import (
    ADMIN,
    GOOD_CUSTOMER,
    NO_ROLE,
    q2c_run,
    raise_exception,
    run_through,
    user_for,
)

_people = count(1)


def person(role: str) -> object:
    user = get_user_model().objects.create_user(username=f"{role}-{next(_people)}", password="pw")
    user.groups.add(Group.objects.get(name=role))
    return user


def requested(exc=None, *, by=None, corrected=None) -> Replay:
    exc = exc or raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    return services.replay_request(
        kind=ReplayKind.STEP, step_run=exc.step_run, actor=Actor.person(by or person("sales_ops")),
        reason="billing fixed", corrected_payload=corrected,
    )  # fmt: skip


@pytest.mark.django_db
def test_the_request_page_shows_the_dry_run_and_the_payload(client):
    # given
    exc = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    client.force_login(person("sales_ops"))
    # when
    response = client.get(reverse("replay-create"), {"step_run": exc.step_run_id})
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert [(r["name"], r["action"]) for r in response.context["preview"]["steps"]] == [
        ("create_subscription", "run")
    ]
    assert "A corrected payload is allowed only for" in page
    assert 'name="corrected_payload"' not in page


def failed_to_resolve_the_customer() -> OperationalException:
    """Quote to cash stopped at resolve_customer: CPQ sent an email the account cannot hold."""
    _order, run = q2c_run(customer_snapshot={**GOOD_CUSTOMER, "email": "ap at harbour"})
    run_through(run, "resolve_customer")
    return OperationalException.objects.get(workflow_run=run)


@pytest.mark.django_db
def test_the_request_page_offers_the_failed_steps_input_to_correct(client):
    # given
    exc = failed_to_resolve_the_customer()
    client.force_login(person("data_steward"))
    # when
    response = client.get(reverse("replay-create"), {"step_run": exc.step_run_id})
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert json.loads(response.context["original_json"]) == {
        **GOOD_CUSTOMER, "email": "ap at harbour"
    }  # fmt: skip
    assert 'name="corrected_payload"' in page
    assert "works with the quote&#x27;s customer snapshot" in page


@pytest.mark.django_db
def test_a_step_that_declares_no_input_is_offered_no_corrected_payload(client):
    # given
    exc = raise_exception()  # master data, but the test flow's create_customer declares no input
    client.force_login(person("data_steward"))
    # when
    response = client.get(reverse("replay-create"), {"step_run": exc.step_run_id})
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="corrected_payload"' not in page
    assert "Step create_customer takes no corrected payload" in page


@pytest.mark.django_db
def test_a_request_with_a_corrected_payload_is_shown_as_a_diff(client):
    # given
    exc = failed_to_resolve_the_customer()  # master data on a step with an input: correctable
    corrected = {**GOOD_CUSTOMER, "email": "ap@harbour.example"}
    client.force_login(person("data_steward"))
    # when
    response = client.post(
        reverse("replay-create"),
        {"step_run": exc.step_run_id, "kind": "step", "reason": "email corrected",
         "corrected_payload": json.dumps(corrected)},
    )  # fmt: skip
    replay = Replay.objects.get()
    page = client.get(reverse("replay-detail", args=[replay.pk])).content.decode()
    # then
    assert response.status_code == 302
    assert response["Location"] == f"/replays/{replay.pk}/"
    assert (replay.state, replay.corrected_payload) == (ReplayState.REQUESTED, corrected)
    diff = re.findall(r'<span class="(added|removed)">(.*?)</span>', page)
    assert diff == [("removed", "--- original"), ("added", "+++ corrected"),
                    ("removed", '-  &quot;email&quot;: &quot;ap at harbour&quot;,'),
                    ("added", '+  &quot;email&quot;: &quot;ap@harbour.example&quot;,')]  # fmt: skip
    assert "What step resolve_customer will use (corrected)" in page
    uses = re.search(r'will use \(corrected\).*?<pre class="context">(.*?)</pre>', page, re.S)
    assert uses is not None
    assert html.unescape(uses.group(1)) == json.dumps(corrected, indent=2, sort_keys=True)
    assert "You requested this replay; another person" in page  # no decision forms for them
    assert 'data-action="approve"' not in page


@pytest.mark.django_db
def test_an_untouched_payload_sent_back_with_crlf_line_endings_is_no_correction(client):
    # given: the request page, whose textarea holds the original payload
    exc = failed_to_resolve_the_customer()
    client.force_login(person("data_steward"))
    shown = client.get(reverse("replay-create"), {"step_run": exc.step_run_id}).context[
        "original_json"
    ]
    # when: the browser submits the textarea untouched (HTML forms normalise to CRLF)
    response = client.post(
        reverse("replay-create"),
        {"step_run": exc.step_run_id, "kind": "step", "reason": "retry as it is",
         "corrected_payload": shown.replace("\n", "\r\n") + "\r\n"},
    )  # fmt: skip
    # then: the replay carries no corrected payload and the page shows no diff
    replay = Replay.objects.get()
    assert response.status_code == 302
    assert (replay.state, replay.corrected_payload) == (ReplayState.REQUESTED, None)
    page = client.get(reverse("replay-detail", args=[replay.pk])).content.decode()
    assert "--- original" not in page


@pytest.mark.django_db
def test_a_corrected_payload_that_does_not_fit_is_refused_with_its_reason_and_kept(client):
    # given
    exc = failed_to_resolve_the_customer()
    text = json.dumps({**GOOD_CUSTOMER, "country": "United Kingdom"})
    client.force_login(person("data_steward"))
    # when
    response = client.post(
        reverse("replay-create"),
        {"step_run": exc.step_run_id, "kind": "step", "reason": "x", "corrected_payload": text},
    )
    # then
    page = response.content.decode()
    assert response.status_code == 400
    assert "country must be a 2-letter ISO code, not &#x27;United Kingdom&#x27;" in page
    assert response.context["corrected_text"] == text
    assert Replay.objects.count() == 0


@pytest.mark.django_db
def test_invalid_json_is_refused_and_nothing_is_requested(client):
    # given
    exc = raise_exception()
    client.force_login(person("data_steward"))
    # when
    response = client.post(
        reverse("replay-create"),
        {"step_run": exc.step_run_id, "kind": "step", "reason": "x", "corrected_payload": "{no"},
    )
    # then
    assert response.status_code == 400
    assert Replay.objects.count() == 0


@pytest.mark.django_db
def test_approving_through_the_page_enqueues_the_execution_after_commit(
    client, django_capture_on_commit_callbacks
):
    # given
    replay = requested()
    checker = person("finance_ops")
    client.force_login(checker)
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("replay-approve", args=[replay.pk]), {"reason": "ok"})
    # then
    replay.refresh_from_db()
    assert response.status_code == 302
    assert (replay.state, replay.decided_by, replay.decision_reason) == (
        ReplayState.APPROVED,
        checker,
        "ok",
    )
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_the_requester_is_refused_on_the_page_too_and_offered_no_decision(client):
    # given
    maker = person("finance_ops")
    replay = requested(by=maker)
    client.force_login(maker)
    # when
    response = client.post(
        reverse("replay-approve", args=[replay.pk]), {"reason": "me"}, follow=True
    )
    # then
    page = response.content.decode()
    replay.refresh_from_db()
    assert replay.state == ReplayState.REQUESTED
    assert "cannot approve it: another person must" in page
    assert 'data-action="approve"' not in page
    assert "You requested this replay; another person" in page


@pytest.mark.django_db
def test_rejecting_records_the_reason(client):
    # given
    replay = requested()
    client.force_login(person("finance_ops"))
    # when
    client.post(reverse("replay-reject", args=[replay.pk]), {"reason": "fix billing first"})
    # then
    replay.refresh_from_db()
    assert (replay.state, replay.decision_reason) == (ReplayState.REJECTED, "fix billing first")


WHO = [*ROLE_NAMES, ADMIN, NO_ROLE]
ACTIONS = [
    ("replay-approve", "exceptions.approve_replay"),
    ("replay-reject", "exceptions.approve_replay"),
    ("replay-create", "exceptions.request_replay"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("url_name, perm", ACTIONS, ids=[a[0] for a in ACTIONS])
@pytest.mark.parametrize("who", WHO)
def test_replay_actions_are_403_exactly_for_those_without_the_permission(
    client, who, url_name, perm
):
    # given
    replay = requested()
    user = user_for(who)
    client.force_login(user)
    if url_name == "replay-create":
        other = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
        url, data = reverse(url_name), {"workflow_run": other.workflow_run_id, "kind": "workflow",
                                        "reason": "again"}  # fmt: skip
    else:
        url, data = reverse(url_name, args=[replay.pk]), {"reason": "decided"}
    # when
    response = client.post(url, data)
    # then
    assert response.status_code == (302 if user.has_perm(perm) else 403)
    if not user.has_perm(perm):
        replay.refresh_from_db()
        assert (replay.state, Replay.objects.count()) == (ReplayState.REQUESTED, 1)
    elif url_name == "replay-create":
        assert Replay.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(("state", "expected"), [("", 2), ("rejected", 1), ("approved", 0)])
def test_the_list_filters_by_state(client, state, expected):
    # given
    first = requested()
    services.replay_reject(replay=first, actor=Actor.person(person("finance_ops")), reason="no")
    requested()
    client.force_login(person("auditor"))
    # when
    response = client.get(reverse("replay-list"), {"state": state})
    # then
    assert len(response.context["page"]) == expected


@pytest.mark.django_db
def test_htmx_request_gets_only_the_rows_partial(client):
    # given
    requested()
    client.force_login(person("auditor"))
    # when
    response = client.get(reverse("replay-list"), headers={"HX-Request": "true"})
    # then
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="rows">')
    assert "<html" not in page and "<form" not in page


# Session, user, groups (role), user and group permissions, count, rows, saved views.
LIST_QUERIES = 8


@pytest.mark.django_db
def test_list_query_count_does_not_grow_with_rows(client, django_assert_num_queries):
    # given
    client.force_login(user_for("auditor"))
    for _ in range(2):
        requested()
    # when
    with django_assert_num_queries(LIST_QUERIES):
        two = client.get(reverse("replay-list"))
    for _ in range(6):
        requested()
    with django_assert_num_queries(LIST_QUERIES):
        eight = client.get(reverse("replay-list"))
    # then
    assert (len(two.context["page"]), len(eight.context["page"])) == (2, 8)
