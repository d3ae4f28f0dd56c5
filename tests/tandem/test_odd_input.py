"""Odd input on the signed-in pages and the API is a 4xx or a page that ignores it, never a
500: ids that are not 1-18 ASCII digits (``²``, 20 digits), NaN and infinite scores, dates at
the end of the calendar, huge pages and limits. Each case once answered 500."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from core.params import date_from, id_from

GETS = [
    "/duplicates/?min_score=NaN",
    "/duplicates/?min_score=Infinity",
    "/duplicates/?min_score=1e999999",
    "/audit/?until=9999-12-31",
    "/audit/?record=%C2%B2",
    "/audit/?model=q2c.order&record=%C2%B2",
    "/audit/as-of/?model=q2c.order&record=%C2%B2&at=9999-12-31",
    "/audit/operators/?until=9999-12-31",
    "/audit/export.csv?until=9999-12-31",
    "/replays/new/?step_run=%C2%B2",
    "/replays/new/?step_run=99999999999999999999",
    "/merges/new/?candidate=99999999999999999999",
    "/exceptions/?page=99999999999999999999",
    "/orders/?page=99999999999999999999",
    "/api/v1/orders/?limit=99999999999",
    "/api/v1/exceptions/?offset=99999999999999999999",
]


@pytest.fixture
def admin_client(client, db):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_odd_query_strings_never_answer_500(admin_client):
    # when
    statuses = {url: admin_client.get(url).status_code for url in GETS}
    # then
    assert {url: status for url, status in statuses.items() if status >= 500} == {}


@pytest.mark.django_db
@pytest.mark.parametrize("pk", ["\u00b2", "\u0665", "99999999999999999999", "-1", " 1"])
def test_a_bulk_action_on_ids_that_are_not_ids_selects_nothing(admin_client, pk):
    # when
    response = admin_client.post("/exceptions/bulk/", {"action": "retry", "pk": [pk]})
    # then: back to the queue with "select at least one exception"
    assert response.status_code == 302


@pytest.mark.parametrize(
    "value, expected",
    [("12", 12), ("\u00b2", None), ("\u0665", None), ("1" * 19, None), ("", None), (None, None),
     ("1\n", None), ("-3", None)],
)  # fmt: skip
def test_an_id_is_one_to_eighteen_ascii_digits(value, expected):
    assert id_from(value) == expected


@pytest.mark.parametrize(
    "value, ok",
    [("2026-03-01", True), ("9999-12-31", False), ("0001-01-01", False), ("2026-02-30", False),
     ("2026-0\u0663-01", False), ("", False)],
)  # fmt: skip
def test_a_date_is_an_ascii_iso_day_in_a_bounded_range(value, ok):
    assert (date_from(value) is not None) == ok


@pytest.fixture
def an_exception(db):  # type: ignore[no-untyped-def]
    from orchestration.workflows import engine
    from tests.exceptions.helpers import FLOW, KIND, planned, raise_exception

    engine.workflow_register(FLOW)
    try:
        return raise_exception()
    finally:
        planned.clear()
        engine.REGISTRY.pop(KIND, None)


@pytest.mark.django_db
def test_deeply_nested_json_on_an_api_post_is_a_400_and_stores_nothing(admin_client, an_exception):
    # given
    from exceptions.models import ExceptionComment

    body = "[" * 5000 + "]" * 5000
    # when
    response = admin_client.post(
        f"/api/v1/exceptions/{an_exception.pk}/comments/", data=body,
        content_type="application/json",
    )  # fmt: skip
    # then
    assert response.status_code == 400
    assert response.json()["detail"] == "JSON nested deeper than 32 levels"
    assert ExceptionComment.objects.count() == 0


@pytest.mark.django_db
def test_a_comment_longer_than_the_limit_is_refused_and_nothing_is_stored(make_user, an_exception):
    # given
    from core.audit import Actor
    from core.errors import Refused
    from exceptions.models import ExceptionComment
    from exceptions.services import COMMENT_MAX_CHARS, exception_comment

    ivan = Actor.person(make_user("ivan", role="integration_support"))
    # when
    with pytest.raises(Refused) as refused:
        exception_comment(exception=an_exception, body="x" * (COMMENT_MAX_CHARS + 1), actor=ivan)
    # then
    assert refused.value.message == "a comment is at most 10000 characters (this one has 10001)"
    assert ExceptionComment.objects.count() == 0


@pytest.mark.parametrize("asked, read", [("99999999999", 500), ("20", 20), ("x", 50)])
def test_an_api_page_reads_at_most_the_capped_limit(asked, read):
    # given
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from core.pagination import BoundedLimitOffsetPagination

    request = Request(APIRequestFactory().get("/api/v1/orders/", {"limit": asked}))
    # when
    limit = BoundedLimitOffsetPagination().get_limit(request)
    # then
    assert limit == read
