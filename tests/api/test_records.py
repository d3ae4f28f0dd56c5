"""The read API's payloads, filters, pagination and query counts."""

from __future__ import annotations

import hashlib
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import ApiToken
from masterdata.services import records as md
from q2c import services
from tests import factories
from tests.api.conftest import token_client, user_for


def iso(value: Any) -> str:
    """DRF's rendering of an aware UTC datetime."""
    return value.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_order_detail_has_its_lines_crosswalk_and_money_with_currency(records):
    # given
    order = records["order"]
    md.external_id_link(
        record=order,
        system="erp",
        object_type="sales_order",
        external_id="SO-77",
        actor=factories.actor(),
        reason="test setup",
    )
    order.refresh_from_db()
    client = token_client(user_for("sales_ops"))
    # when
    response = client.get(reverse("api-order-detail", args=[order.enterprise_id]))
    # then
    assert response.status_code == 200
    assert response.json() == {
        "enterprise_id": order.enterprise_id,
        "quote": None,
        "account": records["account"].enterprise_id,
        "legal_entity": records["account"].legal_entity.code,
        "state": "received",
        "currency": "GBP",
        "total": {"amount": "250.0000", "currency": "GBP"},
        "held_from_state": "",
        "hold_reason": "",
        "rejection_reason": "",
        "cancellation_reason": "",
        "accepted_at": None,
        "activated_at": None,
        "state_changed_at": iso(order.state_changed_at),
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
        "lines": [
            {
                "line_no": 1,
                "product": "SKU-X",
                "product_code": "SKU-X",
                "description": records["product"].name,
                "kind": "recurring",
                "quantity": "10.0000",
                "unit_price": {"amount": "25.0000", "currency": "GBP"},
                "discount_percent": "0.0000",
                "billing_period": "month",
                "term_start": "2026-01-01",
                "term_end": "2026-12-31",
                "amount": {"amount": "250.0000", "currency": "GBP"},
            }
        ],
        "external_ids": [{"system": "erp", "object_type": "sales_order", "external_id": "SO-77"}],
    }


@pytest.mark.django_db
def test_account_list_carries_crosswalk_ids_and_aliases(records):
    # given
    account = records["account"]
    client = token_client(user_for("data_steward"))
    # when
    response = client.get(reverse("api-account-list"), {"domain": "acme.example"})
    # then
    body = response.json()
    assert [
        (row["enterprise_id"], row["aliases"], row["external_ids"]) for row in body["results"]
    ] == [
        (
            account.enterprise_id,
            [],
            [{"system": "crm", "object_type": "account", "external_id": "001CRM"}],
        )
    ]


@pytest.mark.django_db
def test_contract_detail_has_numbered_versions_with_lines(records):
    # given
    contract = records["contract"]
    client = token_client(user_for("finance_ops"))
    # when
    response = client.get(reverse("api-contract-detail", args=[contract.enterprise_id]))
    # then
    versions = response.json()["versions"]
    assert [(v["number"], v["kind"], v["state"], v["order"]) for v in versions] == [
        (1, "initial", "pending", records["order"].enterprise_id)
    ]
    assert [(ln["line_no"], ln["amount"]) for ln in versions[0]["lines"]] == [
        (1, {"amount": "250.0000", "currency": "GBP"})
    ]


@pytest.mark.django_db
def test_invoice_shows_total_paid_and_balance_as_money(records):
    # given
    invoice = records["invoice"]
    client = token_client(user_for("finance_ops"))
    # when
    body = client.get(reverse("api-invoice-detail", args=[invoice.enterprise_id])).json()
    # then
    assert (body["state"], body["total"], body["paid"], body["balance"], body["posted_at"]) == (
        "posted",
        {"amount": "100.0000", "currency": "GBP"},
        {"amount": "0.0000", "currency": "GBP"},
        {"amount": "100.0000", "currency": "GBP"},
        iso(invoice.posted_at),
    )


@pytest.mark.django_db
def test_payment_time_keeps_its_zone(records):
    # given
    client = token_client(user_for("finance_ops"))
    # when
    body = client.get(reverse("api-payment-list")).json()
    # then
    assert [(p["amount"], p["received_at"], p["method"]) for p in body["results"]] == [
        ({"amount": "40.0000", "currency": "GBP"}, "2026-02-01T09:30:00Z", "card")
    ]


@pytest.mark.django_db
def test_order_list_filters_by_state_and_account(records):
    # given
    actor = factories.actor()
    other_account = factories.account()
    validated = factories.order(account=records["account"])
    services.order_validate(order=validated, actor=actor, reason="checked")
    factories.order(account=other_account)
    client = token_client(user_for("sales_ops"))
    url = reverse("api-order-list")
    # when
    by_state = client.get(url, {"state": "validated"}).json()["results"]
    by_account = client.get(url, {"account": records["account"].enterprise_id}).json()["results"]
    # then
    assert [o["enterprise_id"] for o in by_state] == [validated.enterprise_id]
    assert [o["enterprise_id"] for o in by_account] == [
        validated.enterprise_id,
        records["order"].enterprise_id,
    ]


@pytest.mark.django_db
def test_an_unknown_state_is_a_400_naming_the_allowed_ones(records):
    # given
    client = token_client(user_for("sales_ops"))
    # when
    response = client.get(reverse("api-order-list"), {"state": "lost"})
    # then
    assert (response.status_code, response.json()) == (
        400,
        {
            "state": [
                "must be one of received, validated, submitted_to_erp, accepted, provisioning, "
                "active, fulfilled, on_hold, rejected, cancelled"
            ]
        },
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page_size", "status", "shown"),
    [("2", 200, 2), ("-1", 200, 3), ("0", 200, 3), ("100000", 200, 3), ("1.5", 400, 0),
     ("-1.9e-28", 400, 0), ("٢", 400, 0), ("2\n", 400, 0), ("", 200, 3)],
)  # fmt: skip
def test_a_page_size_that_is_not_an_integer_is_refused(records, page_size, status, shown):
    # given: three orders
    factories.order(account=records["account"])
    factories.order(account=records["account"])
    client = token_client(user_for("sales_ops"))
    # when
    response = client.get(reverse("api-order-list"), {"page_size": page_size})
    # then
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"page_size": ["must be an integer"]}
    else:
        assert len(response.json()["results"]) == shown


@pytest.mark.django_db
def test_lists_are_cursor_paginated_newest_first(records):
    # given
    newer = [factories.order(account=records["account"]) for _ in range(2)]
    client = token_client(user_for("sales_ops"))
    # when
    first = client.get(reverse("api-order-list"), {"page_size": 2}).json()
    second = client.get(first["next"]).json()
    # then
    assert [o["enterprise_id"] for o in first["results"]] == [
        newer[1].enterprise_id,
        newer[0].enterprise_id,
    ]
    assert [o["enterprise_id"] for o in second["results"]] == [records["order"].enterprise_id]
    assert second["next"] is None


@pytest.mark.django_db
def test_an_unknown_record_is_404(records):
    # given
    client = token_client(user_for("sales_ops"))
    # when
    response = client.get(reverse("api-order-detail", args=["ORD-999999"]))
    # then
    assert (response.status_code, response.json()) == (
        404,
        {"detail": "No Order matches the given query."},
    )


# --- Query counts: 1 token lookup + 2 permission loads, then the page's own reads -----------

LIST_QUERIES = {
    # records, lines (with products) or versions + lines, crosswalk
    "api-order-list": 3 + 3,
    "api-contract-list": 3 + 4,
    "api-invoice-list": 3 + 3,
    "api-quote-list": 3 + 3,
    "api-account-list": 3 + 3,
    "api-payment-list": 3 + 2,
    "api-creditnote-list": 3 + 2,
    "api-product-list": 3 + 2,
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(LIST_QUERIES))
def test_list_query_count_does_not_grow_with_the_rows(records, django_assert_num_queries, name):
    # given: a second set of linked records, so an N+1 would show
    account = records["account"]
    order = factories.order(account=account)
    factories.contract(account=account, order=order)
    factories.invoice(account=account, order=order)
    factories.account()
    factories.product()
    client = token_client(user_for("auditor"))
    # when
    with django_assert_num_queries(LIST_QUERIES[name]):
        response = client.get(reverse(name))
    # then
    assert response.status_code == 200


# --- Issuing tokens -------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_token_command_shows_a_token_once_and_rotates_it(make_user):
    # given
    user = make_user("integration-bot", "integration_support")
    out = StringIO()
    call_command("api_token", "integration-bot", stdout=out)
    first = out.getvalue().strip()
    # when: asked again, it cannot show the token (only its digest is kept)
    with pytest.raises(CommandError, match=r"already has a token .* rotate it"):
        call_command("api_token", "integration-bot", stdout=out)
    call_command("api_token", "integration-bot", "--rotate", stdout=out)
    # then
    rotated = out.getvalue().split()[1]
    assert first != rotated
    stored = list(ApiToken.objects.filter(user=user).values_list("digest", "prefix"))
    assert stored == [(hashlib.sha256(rotated.encode()).hexdigest(), rotated[:8])]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get(reverse("api-order-list")).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {rotated}")
    assert client.get(reverse("api-order-list")).status_code == 200


@pytest.mark.django_db
def test_api_token_command_refuses_unknown_and_inactive_users(make_user):
    # given
    make_user("gone", "sales_ops", is_active=False)
    # when / then
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("api_token", "nobody")
    with pytest.raises(CommandError, match="'gone' is not active"):
        call_command("api_token", "gone")
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_a_nul_character_in_a_filter_is_a_400_not_a_server_error(records):
    # given
    client = token_client(user_for("sales_ops"))
    # when
    response = client.get(reverse("api-order-list"), {"account": "ACC\x00"})
    # then
    assert (response.status_code, response.json()) == (
        400,
        {"account": ["must not contain NUL characters"]},
    )
