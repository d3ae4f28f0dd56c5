"""The audit pages: filters, htmx partials, the operator log, as-of, the streamed export,
pinned query counts and who may read which model's history."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from console.selectors import audit as sel
from core.roles import ROLE_NAMES, ROLES
from tests import factories


def signed_in(client: Any, make_user: Any, role: str, username: str = "audrey") -> Any:
    user = make_user(username, role)
    client.force_login(user)
    return user


def shown(response: Any) -> list[tuple[str, str, str, str]]:
    return [(e.model, e.record, e.kind, e.actor) for e in response.context["page"].entries]


def granted(role: str, perm: str) -> bool:
    return any(p == perm or (p.endswith("*") and perm.startswith(p[:-1])) for p in ROLES[role])


@pytest.mark.django_db
def test_history_page_filters_by_model_record_and_actor(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    order = story.order.enterprise_id
    # when
    response = client.get(
        reverse("audit-history"), {"model": "q2c.order", "record": order, "actor": "alice"}
    )
    # then
    assert response.status_code == 200
    assert shown(response) == [("q2c.order", order, "changed", "alice")]
    body = response.content.decode()
    assert "<del>credit check</del>" not in body
    assert "<ins>credit check</ins>" in body
    assert "<!doctype html>" in body


@pytest.mark.django_db
def test_htmx_request_gets_only_the_rows_partial(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    response = client.get(
        reverse("audit-history"),
        {"model": "q2c.order", "record": story.order.enterprise_id},
        HTTP_HX_REQUEST="true",
    )
    # then
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="rows">')
    assert "<!doctype html>" not in body
    assert [row[3] for row in shown(response)] == ["bob", "alice", "worker", "worker"]


@pytest.mark.django_db
def test_history_page_follows_the_older_link_to_the_next_page(client, make_user, story):
    # given: 26 orders of two rows each, plus the story's hold and release: 54 rows
    user = signed_in(client, make_user, "auditor")
    for _ in range(25):
        factories.order(account=story.order.account)
    everything = [
        e.history_id
        for e in sel.history_iter(user=user, flt=sel.HistoryFilter(models=("q2c.order",)))
    ]
    # when
    first = client.get(reverse("audit-history"), {"model": "q2c.order"})
    second = client.get(f"{reverse('audit-history')}?{first.context['next_query']}")
    # then
    assert first.context["next_query"].startswith("model=q2c.order&after=")
    assert [e.history_id for e in first.context["page"].entries] == everything[:50]
    assert [e.history_id for e in second.context["page"].entries] == everything[50:]
    assert (len(everything), second.context["next_query"]) == (54, "")


@pytest.mark.django_db
def test_operator_log_shows_only_people_with_their_reasons(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    response = client.get(reverse("audit-operators"))
    # then
    assert [(e.actor, e.reason) for e in response.context["page"].entries] == [
        ("bob", "credit approved"),
        ("alice", "credit check"),
    ]


@pytest.mark.django_db
def test_as_of_page_shows_the_record_as_it_stood(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    response = client.get(
        reverse("audit-as-of"),
        {"model": "q2c.order", "record": story.order.enterprise_id, "at": "2026-03-02T12:00"},
    )
    # then
    values = dict(response.context["result"].values)
    assert (values["state"], values["hold_reason"]) == ("on_hold", "credit check")
    assert (
        "last changed 2026-03-02 09:00:00 UTC by alice (credit check)" in response.content.decode()
    )


@pytest.mark.django_db
def test_as_of_before_the_record_existed_says_so(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    response = client.get(
        reverse("audit-as-of"),
        {"model": "q2c.order", "record": story.order.enterprise_id, "at": "2026-02-01T00:00"},
    )
    # then
    assert response.context["result"].row is None
    assert f"{story.order.enterprise_id}</strong> did not exist as of 2026-02-01 00:00:00" in (
        response.content.decode()
    )


@pytest.mark.django_db
def test_export_streams_the_filtered_rows_as_csv(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    order = story.order.enterprise_id
    held = story.rows[2]
    # when
    response = client.get(
        reverse("audit-export"), {"model": "q2c.order", "record": order, "actor_kind": "person"}
    )
    # then
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="tandem-audit-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "when", "model", "record", "record_id", "history_id", "type", "actor", "reason", "changes",
    ]  # fmt: skip
    assert [r[:8] for r in rows[1:]] == [
        [
            "2026-03-03T09:00:00+00:00", "q2c.order", order, str(story.order.pk),
            str(story.rows[3].history_id), "changed", "bob", "credit approved",
        ],
        [
            "2026-03-02T09:00:00+00:00", "q2c.order", order, str(story.order.pk),
            str(held.history_id), "changed", "alice", "credit check",
        ],
    ]  # fmt: skip
    assert rows[2][8] == (
        f"state_changed_at: {story.rows[1].state_changed_at.isoformat()} -> "
        f"{held.state_changed_at.isoformat()}; state: received -> on_hold; "
        "held_from_state:  -> received; hold_reason:  -> credit check"
    )


@pytest.mark.django_db
def test_export_reads_the_trail_only_as_the_response_is_consumed(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    response = client.get(reverse("audit-export"), {"model": "q2c.order"})
    content = iter(response.streaming_content)
    # when
    with CaptureQueriesContext(connection) as before_rows:
        header = next(content)
    with CaptureQueriesContext(connection) as while_streaming:
        rest = list(content)
    # then: nothing was read before the first row was asked for
    assert header.decode().startswith("when,model,record,")
    assert [q for q in before_rows.captured_queries if "historical" in q["sql"]] == []
    assert len(rest) == 4
    assert [q["sql"].split(" FROM ")[1].split()[0] for q in while_streaming.captured_queries] == [
        '"q2c_historicalorder"',
        '"q2c_historicalorder"',
    ]


@pytest.mark.django_db
def test_a_model_the_role_may_not_view_is_refused(client, make_user, story):
    # given: sales ops may not view invoices
    signed_in(client, make_user, "sales_ops")
    # when
    pages = [
        client.get(reverse(name), {"model": "q2c.invoice"}).status_code
        for name in ("audit-history", "audit-operators", "audit-as-of", "audit-export")
    ]
    # then
    assert pages == [403, 403, 403, 403]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLE_NAMES)
def test_each_role_reads_exactly_the_history_of_the_models_it_may_view(client, make_user, role):
    # given
    signed_in(client, make_user, role)
    tracked = sel.tracked_models()
    # when
    answered = {
        t.key: client.get(reverse("audit-history"), {"model": t.key}).status_code for t in tracked
    }
    # then
    assert answered == {t.key: 200 if granted(role, t.view_permission) else 403 for t in tracked}


# --- Pinned query counts ----------------------------------------------------------------------


@pytest.mark.django_db
def test_history_page_for_one_model_has_a_fixed_query_count(
    client, make_user, story, django_assert_num_queries
):
    # given: more orders, so an N+1 over rows would show
    signed_in(client, make_user, "auditor")
    for _ in range(5):
        factories.order(account=story.order.account)
    # when: session, user, role groups, permissions (2), the rows with their previous rows'
    # ids, the previous rows, the accounts and legal entities the rows name, the navigation's
    # role groups, the auditor's saved views of the page
    with django_assert_num_queries(11):
        response = client.get(reverse("audit-history"), {"model": "q2c.order"})
    # then
    assert len(response.context["page"].entries) == 14


@pytest.mark.django_db
def test_history_page_across_models_reads_only_the_models_on_the_page(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("audit-history"))
    # then: session, user, groups, permissions (2), one UNION of every model's newest keys,
    # one read per model on the page, one read of the previous rows per model whose rows on
    # the page have any, one read per model the changes reference, the navigation's groups,
    # the saved views
    entries = response.context["page"].entries
    on_page = {e.model for e in entries}
    with_previous = {e.model for e in entries if e.row._prev_history_id is not None}
    assert (on_page, with_previous) == (
        {"masterdata.account", "masterdata.legalentity", "q2c.order", "q2c.orderline"},
        {"q2c.order"},
    )
    targets = [
        entry.tracked.model._meta.get_field(change.field).related_model
        for entry in entries
        for change in entry.changes
    ]
    referenced = {target for target in targets if target is not None}
    assert len(queries) == 5 + 1 + len(on_page) + len(with_previous) + len(referenced) + 1 + 1


@pytest.mark.django_db
def test_as_of_link_of_a_row_shows_the_record_right_after_that_change(client, make_user, story):
    # given: the held row's date has microseconds, which the link must keep
    signed_in(client, make_user, "auditor")
    held = story.rows[2]
    held.__class__.objects.filter(history_id=held.history_id).update(
        history_date=held.history_date.replace(microsecond=654321)
    )
    page = client.get(
        reverse("audit-history"), {"model": "q2c.order", "record": story.order.enterprise_id}
    )
    links = re.findall(r'href="(/audit/as-of/\?[^"]+)"', page.content.decode())
    # when: the links are newest first; the second is alice's hold
    response = client.get(html.unescape(links[1]))
    # then
    values = dict(response.context["result"].values)
    assert (values["state"], values["hold_reason"]) == ("on_hold", "credit check")
    assert response.context["result"].row.history_id == held.history_id
    # the link carries the record's id; the page names it as people know it
    assert f"<strong>{story.order.enterprise_id}</strong> as of" in response.content.decode()


@pytest.mark.django_db
def test_a_nul_character_in_a_filter_is_reported_not_a_server_error(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    response = client.get(reverse("audit-history"), {"model": "q2c.order", "actor": "al\x00"})
    as_of = client.get(reverse("audit-as-of"), {"model": "q2c.order", "record": "\x00", "at": "x"})
    # then
    assert response.context["errors"] == ["actor must not contain NUL characters"]
    assert len(response.context["page"].entries) == 4
    assert as_of.status_code == 400


@pytest.mark.django_db
def test_changes_name_their_fields_and_show_references_by_business_id(client, make_user, story):
    # given
    signed_in(client, make_user, "auditor")
    # when
    page = client.get(reverse("audit-history"), {"model": "q2c.order"}).content.decode()
    # then: the order's account and legal entity by their ids, under the fields' names
    order = story.order
    account_set = re.findall(r'title="account_id">account</span> <ins>([^<]*)</ins>', page)
    entity_set = re.findall(r'title="legal_entity_id">legal entity</span> <ins>([^<]*)</ins>', page)
    assert account_set == [order.account.enterprise_id]
    assert entity_set == [order.legal_entity.enterprise_id]
    assert f"<ins>{order.account_id}</ins>" not in page


@pytest.mark.django_db
def test_the_export_neutralises_a_reason_a_spreadsheet_would_run_as_a_formula(client, make_user):
    # given: a hold whose reason is a formula
    from core.audit import Actor
    from q2c.services import order_hold

    order = factories.order()
    sam = make_user("sam", "sales_ops")
    order_hold(order=order, actor=Actor.person(sam), reason='=HYPERLINK("http://x.example","x")')
    signed_in(client, make_user, "auditor")
    # when
    response = client.get(reverse("audit-export"), {"model": "q2c.order", "actor": "sam"})
    # then: shown as text, not run
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[7] for row in rows[1:]] == ['\'=HYPERLINK("http://x.example","x")']
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)
