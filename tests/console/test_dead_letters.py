"""The dead-letter view in the console: who sees it, what it lists, and reprocess/discard
through the page (a reason, audited, permission checked on the server)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orchestration.models import DeadLetterAction, InboundEvent


def _unsigned(client, body: bytes = b'{"event_id": "e1"}') -> InboundEvent:  # type: ignore[no-untyped-def]
    response = client.post("/webhooks/cpq/", data=body, content_type="application/json")
    assert response.status_code == 401
    return InboundEvent.objects.order_by("-pk").first()  # type: ignore[return-value]


@pytest.mark.django_db
def test_support_lists_rejected_deliveries_and_discards_one_with_a_reason(client, make_user):
    # given
    event = _unsigned(client)
    client.force_login(make_user("ivan", role="integration_support"))
    # when
    listing = client.get(reverse("dead-letter-list"))
    detail = client.get(reverse("dead-letter-detail", args=[event.pk]))
    response = client.post(
        reverse("dead-letter-action", args=[event.pk]),
        {"action": "discard", "reason": "a scanner, not the CPQ"},
    )
    # then
    assert listing.status_code == 200
    assert [e.pk for e in listing.context["page"]] == [event.pk]
    assert detail.status_code == 200
    assert b'value="discard"' in detail.content
    assert b'value="reprocess"' not in detail.content  # never for an unauthenticated delivery
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.status == "discarded"
    assert list(DeadLetterAction.objects.values_list("action", "reason")) == [
        ("discard", "a scanner, not the CPQ")
    ]


@pytest.mark.django_db
def test_an_auditor_reads_dead_letters_but_an_action_is_forbidden_and_changes_nothing(
    client, make_user
):
    # given
    event = _unsigned(client)
    client.force_login(make_user("ada", role="auditor"))
    # when
    detail = client.get(reverse("dead-letter-detail", args=[event.pk]))
    response = client.post(
        reverse("dead-letter-action", args=[event.pk]), {"action": "discard", "reason": "x"}
    )
    # then
    assert detail.status_code == 200
    assert b'value="discard"' not in detail.content
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.status == "rejected"
    assert DeadLetterAction.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["sales_ops", "finance_ops", "data_steward"])
def test_roles_without_the_permission_cannot_open_the_dead_letters(client, make_user, role):
    # given
    event = _unsigned(client)
    client.force_login(make_user("p", role=role))
    # when
    responses = [
        client.get(reverse("dead-letter-list")),
        client.get(reverse("dead-letter-detail", args=[event.pk])),
        client.post(
            reverse("dead-letter-action", args=[event.pk]), {"action": "discard", "reason": "x"}
        ),
    ]
    # then
    assert [r.status_code for r in responses] == [403, 403, 403]
    event.refresh_from_db()
    assert event.status == "rejected"


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"status": "processed"}, {"system": "nope"}, {"page": "x²"}])
def test_a_bad_filter_is_a_400_with_the_reason_never_a_500(client, make_user, query):
    # given
    client.force_login(make_user("ivan", role="integration_support"))
    # when
    response = client.get(reverse("dead-letter-list"), query)
    # then
    assert response.status_code == 400
    assert response.context["form"].errors
