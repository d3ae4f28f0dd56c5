"""The OpenAPI schema at /api/schema/ and the API checked against it by schemathesis, in
process over WSGI with a real token: no 5xx, and every response conforms to the schema
(status codes, content types, bodies)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import reverse
from hypothesis import HealthCheck, given, settings

from core.tokens import api_token_issue
from tandem.wsgi import application
from tests.api.conftest import token_client, user_for


@pytest.fixture
def auditor_token(records: dict[str, Any], settings: Any) -> str:
    settings.ALLOWED_HOSTS = ["*"]  # schemathesis' WSGI client calls itself "localhost"
    user = user_for("auditor")
    return api_token_issue(user=user, rotate=True)


@pytest.fixture
def api_schema(auditor_token: str) -> Iterator[Any]:
    # As Django's test client does: the WSGI handler would otherwise close the connection
    # that holds the test's transaction at the end of every request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/schema/", application, headers={"Authorization": f"Token {auditor_token}"}
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


EXAMPLES_PER_OPERATION = 15


@pytest.mark.django_db
def test_every_operation_conforms_to_the_schema(api_schema, auditor_token):
    # given: every operation of the schema (pytest 9 cannot run schemathesis' lazy fixture
    # parametrization, so each operation runs its own Hypothesis test here)
    headers = {"Authorization": f"Token {auditor_token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    checked = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            # when / then: no server error, and the response matches the schema
            case.call_and_validate(headers=headers)

        conforms()
        checked.append(operation.label)
    # then: this module's 18 operations at least (other apps mount theirs beside them)
    assert len(checked) == len(operations) >= 18


@pytest.mark.django_db
def test_schema_is_served_to_token_holders_only(records):
    # given
    holder = token_client(user_for("sales_ops"))
    anonymous = token_client(user_for("anonymous"))
    # when
    served = holder.get(reverse("api-schema"), {"format": "json"})
    refused = anonymous.get(reverse("api-schema"))
    # then
    assert served.status_code == 200
    paths = served.json()["paths"]
    assert [p for p in paths if not p.startswith("/api/v1/")] == []
    # the read API's paths (the exceptions app mounts its actions beside them)
    assert set(paths) >= {
        "/api/v1/accounts/",
        "/api/v1/accounts/{enterprise_id}/",
        "/api/v1/audit/as-of/",
        "/api/v1/audit/history/",
        "/api/v1/contracts/",
        "/api/v1/contracts/{enterprise_id}/",
        "/api/v1/credit-notes/",
        "/api/v1/credit-notes/{enterprise_id}/",
        "/api/v1/invoices/",
        "/api/v1/invoices/{enterprise_id}/",
        "/api/v1/orders/",
        "/api/v1/orders/{enterprise_id}/",
        "/api/v1/payments/",
        "/api/v1/payments/{enterprise_id}/",
        "/api/v1/products/",
        "/api/v1/products/{enterprise_id}/",
        "/api/v1/quotes/",
        "/api/v1/quotes/{enterprise_id}/",
    }
    assert served.json()["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": 'Token-based authentication with required prefix "Token"',
    }
    assert refused.status_code == 401


@pytest.mark.django_db
def test_docs_page_renders_the_schema_in_the_browsable_api(client, records):
    # given
    client.force_login(user_for("auditor"))
    # when
    response = client.get(reverse("api-docs"), HTTP_ACCEPT="text/html")
    # then
    assert (response.status_code, response["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert "/api/v1/orders/{enterprise_id}/" in response.content.decode()
    html = response.content.decode()
    assets = re.findall(r'<script[^>]* src="([^"]+)"', html) + re.findall(
        r'<link[^>]* href="([^"]+)"', html
    )
    assert assets != []
    assert [url for url in assets if not url.startswith("/static/")] == []
