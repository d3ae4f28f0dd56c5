"""The audit trail over the API: filters, diffs, cursor pages and as-of."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.api.conftest import token_client


@pytest.mark.django_db
def test_history_filtered_by_actor_kind_lists_peoples_changes_with_diffs(story, make_user):
    # given
    client = token_client(make_user("audrey", "auditor"))
    order = story.order
    # when
    response = client.get(
        reverse("api-audit-history"),
        {"model": "q2c.order", "record": order.enterprise_id, "actor_kind": "person"},
    )
    # then
    held, released = story.rows[2], story.rows[3]
    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "results": [
            {
                "history_id": released.history_id,
                "model": "q2c.order",
                "record": order.enterprise_id,
                "record_id": order.pk,
                "when": "2026-03-03T09:00:00Z",
                "kind": "changed",
                "actor": "bob",
                "actor_is_system": False,
                "reason": "credit approved",
                "changes": [
                    {
                        "field": "state_changed_at",
                        "old": held.state_changed_at.isoformat(),
                        "new": released.state_changed_at.isoformat(),
                    },
                    {"field": "state", "old": "on_hold", "new": "received"},
                    {"field": "held_from_state", "old": "received", "new": ""},
                    {"field": "hold_reason", "old": "credit check", "new": ""},
                ],
            },
            {
                "history_id": held.history_id,
                "model": "q2c.order",
                "record": order.enterprise_id,
                "record_id": order.pk,
                "when": "2026-03-02T09:00:00Z",
                "kind": "changed",
                "actor": "alice",
                "actor_is_system": False,
                "reason": "credit check",
                "changes": [
                    {
                        "field": "state_changed_at",
                        "old": story.rows[1].state_changed_at.isoformat(),
                        "new": held.state_changed_at.isoformat(),
                    },
                    {"field": "state", "old": "received", "new": "on_hold"},
                    {"field": "held_from_state", "old": "", "new": "received"},
                    {"field": "hold_reason", "old": "", "new": "credit check"},
                ],
            },
        ],
    }


@pytest.mark.django_db
def test_history_pages_follow_the_next_link(story, make_user):
    # given
    client = token_client(make_user("audrey", "auditor"))
    query = {"model": "q2c.order", "record": story.order.enterprise_id, "page_size": 3}
    # when
    first = client.get(reverse("api-audit-history"), query).json()
    second = client.get(first["next"]).json()
    # then
    assert [r["history_id"] for r in first["results"] + second["results"]] == [
        r.history_id for r in reversed(story.rows)
    ]
    assert second["next"] is None


@pytest.mark.django_db
def test_history_with_a_foreign_cursor_is_404(story, make_user):
    # given
    client = token_client(make_user("audrey", "auditor"))
    # when
    response = client.get(reverse("api-audit-history"), {"cursor": "not-a-cursor"})
    # then
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid cursor"})


@pytest.mark.django_db
def test_as_of_returns_the_record_as_it_stood(story, make_user):
    # given
    client = token_client(make_user("audrey", "auditor"))
    # when
    response = client.get(
        reverse("api-audit-as-of"),
        {"model": "q2c.order", "record": story.order.enterprise_id, "at": "2026-03-02T12:00Z"},
    )
    # then
    body = response.json()
    assert (body["existed"], body["changed_at"], body["changed_by"], body["reason"]) == (
        True,
        "2026-03-02T09:00:00Z",
        "alice",
        "credit check",
    )
    assert (body["values"]["state"], body["values"]["hold_reason"]) == ("on_hold", "credit check")


@pytest.mark.django_db
def test_as_of_before_creation_did_not_exist(story, make_user):
    # given
    client = token_client(make_user("audrey", "auditor"))
    # when
    response = client.get(
        reverse("api-audit-as-of"),
        {"model": "q2c.order", "record": story.order.enterprise_id, "at": "2026-01-01T00:00Z"},
    )
    # then
    body = response.json()
    assert (body["existed"], body["changed_at"], body["values"]) == (False, None, {})
