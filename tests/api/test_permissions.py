"""Who may call which API endpoint: generated from the URL table and core.roles.ROLES.

Every record and audit route (q2c, masterdata and console api_urls) is tried by every
role, an admin, a user without a role and an anonymous caller; the expected answer is read
from the ROLES table (not from the user's permissions, so a permission class that asked the
wrong question fails here).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from console import api_urls as audit_urls
from core.roles import ROLE_NAMES, ROLES
from masterdata import api_urls as masterdata_urls
from q2c import api_urls as q2c_urls
from tests.api.conftest import ADMIN, ANONYMOUS, NO_ROLE, token_client, user_for

WHO = [*ROLE_NAMES, ADMIN, NO_ROLE, ANONYMOUS]
AUDIT_ROUTES = {"api-audit-history", "api-audit-as-of"}
PATTERNS = [*q2c_urls.urlpatterns, *masterdata_urls.urlpatterns, *audit_urls.urlpatterns]
ROUTES = [pattern.name for pattern in PATTERNS]
# Which fixture record a detail route reads (its url name without "api-" and "-detail").
RECORD_OF = {"creditnote": "credit_note"}
# Write-only routes answer the GET of this test 405 once their permission lets it through.
POST_ONLY = {"api-usage-bulk"}


def granted(who: str, perm: str) -> bool:
    """Does the ROLES table give ``who`` the permission ``perm``?"""
    if who == ADMIN:
        return True
    if who in (NO_ROLE, ANONYMOUS):
        return False
    return any(p == perm or (p.endswith("*") and perm.startswith(p[:-1])) for p in ROLES[who])


def may_read_some_history(who: str) -> bool:
    from console.selectors.audit import tracked_models

    return any(granted(who, t.view_permission) for t in tracked_models())


def route_call(name: str, records: dict[str, Any]) -> tuple[str, dict[str, str], str]:
    """(url, query, the permission the route needs) for one route of the API."""
    if name == "api-audit-history":
        return reverse(name), {}, ""
    if name == "api-audit-as-of":
        order = records["order"]
        return reverse(name), {"model": "q2c.order", "record": order.enterprise_id,
                               "at": "2030-01-01T00:00:00Z"}, "q2c.view_order"  # fmt: skip
    pattern = next(p for p in PATTERNS if p.name == name)
    view = pattern.callback.view_class  # type: ignore[attr-defined]
    if name.endswith("-detail"):
        kind = name.removeprefix("api-").removesuffix("-detail")
        record = records[RECORD_OF.get(kind, kind)]
        return reverse(name, args=[record.enterprise_id]), {}, view.required_permission
    return reverse(name), {}, view.required_permission


def test_every_route_names_a_permission_or_is_an_audit_route():
    # given / when
    unguarded = [
        name
        for name in ROUTES
        if name not in AUDIT_ROUTES
        and not next(p for p in PATTERNS if p.name == name).callback.view_class.required_permission  # type: ignore[attr-defined]
    ]
    # then
    assert unguarded == []


def expected_status(who: str, name: str, perm: str) -> int:
    if who == ANONYMOUS:
        return 401
    if name == "api-audit-history":
        return 200 if may_read_some_history(who) else 403
    if not granted(who, perm):
        return 403
    return 405 if name in POST_ONLY else 200


@pytest.mark.django_db
@pytest.mark.parametrize("who", WHO)
def test_every_endpoint_answers_exactly_those_the_roles_table_allows(records, who):
    # given
    client = token_client(user_for(who))
    calls = {name: route_call(name, records) for name in ROUTES}
    # when
    answered = {name: client.get(url, query).status_code for name, (url, query, _) in calls.items()}
    # then
    assert answered == {
        name: expected_status(who, name, perm) for name, (_, _, perm) in calls.items()
    }


@pytest.mark.django_db
def test_anonymous_callers_are_asked_for_a_token(records):
    # given
    client = token_client(user_for(ANONYMOUS))
    # when
    response = client.get(reverse("api-order-list"))
    # then
    assert (response.status_code, response["WWW-Authenticate"], response.json()) == (
        401,
        "Token",
        {"detail": "Authentication credentials were not provided."},
    )


@pytest.mark.django_db
def test_a_wrong_token_is_refused_with_401(records):
    # given
    client = token_client(user_for("auditor"))
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    # when
    response = client.get(reverse("api-order-list"))
    # then
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid token."})


@pytest.mark.django_db
def test_a_signed_in_session_may_use_the_browsable_api(client, records):
    # given
    client.force_login(user_for("sales_ops"))
    # when
    response = client.get(reverse("api-order-list"), HTTP_ACCEPT="text/html")
    # then
    assert (response.status_code, response["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert records["order"].enterprise_id in response.content.decode()


@pytest.mark.django_db
def test_history_of_a_model_outside_the_role_is_refused(records):
    # given: sales ops may view orders but not invoices
    client = token_client(user_for("sales_ops"))
    # when
    refused = client.get(reverse("api-audit-history"), {"model": "q2c.invoice"})
    allowed = client.get(reverse("api-audit-history"), {"model": "q2c.order"})
    # then
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "you may not view the history of q2c.invoice"},
    )
    assert allowed.status_code == 200


@pytest.mark.django_db
def test_history_without_a_model_covers_only_the_models_the_role_may_view(records):
    # given: a data steward sees master data, not orders
    client = token_client(user_for("data_steward"))
    # when
    response = client.get(reverse("api-audit-history"), {"page_size": 200})
    # then
    models = {row["model"] for row in response.json()["results"]}
    assert models == {
        "masterdata.account",
        "masterdata.externalid",
        "masterdata.legalentity",
        "masterdata.product",
        "masterdata.productmapping",
    }
