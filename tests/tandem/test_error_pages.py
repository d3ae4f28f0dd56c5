"""What a person sees when a page is refused or missing, the API's root and the icon."""

from __future__ import annotations

import pytest
from django.templatetags.static import static
from django.urls import reverse

from q2c.models import Order
from tests import factories


@pytest.mark.django_db
def test_a_refused_page_is_the_styled_403_with_the_navigation_and_the_reason(client, make_user):
    # given: a data steward, whose role reads no orders
    client.force_login(make_user("stella", role="data_steward"))
    # when
    response = client.get(reverse("order-list"))
    # then
    page = response.content.decode()
    assert response.status_code == 403
    assert '<section class="card problem" data-status="403">' in page
    assert "Your role may not open Orders." in page
    assert "with the role <strong>data_steward</strong>" in page
    assert f'href="{reverse("exception-list")}"' in page  # the navigation is there
    assert f'href="{reverse("order-list")}"' not in page  # ... without what the role may not open


@pytest.mark.django_db
def test_a_refused_action_names_what_the_role_may_not_do_and_changes_nothing(client, make_user):
    # given: an auditor (read-only) and an order
    order = factories.order()
    client.force_login(make_user("audrey", role="auditor"))
    # when
    response = client.post(reverse("order-hold", args=[order.enterprise_id]), {"reason": "x"})
    # then
    assert response.status_code == 403
    assert "You may not hold or release orders." in response.content.decode()
    assert Order.objects.get(pk=order.pk).state == order.state


@pytest.mark.django_db
def test_a_missing_record_is_the_styled_404_with_the_reason(client, make_user):
    # given
    client.force_login(make_user("sam", role="sales_ops"))
    # when
    missing = client.get(reverse("order-detail", args=["ORD-999999"]))
    nowhere = client.get("/no/such/page/")
    # then
    assert missing.status_code == nowhere.status_code == 404
    assert "No Order matches the given query." in missing.content.decode()
    assert "There is no page at <code>/no/such/page/</code>." in nowhere.content.decode()
    assert f'href="{reverse("order-list")}"' in nowhere.content.decode()


@pytest.mark.django_db
def test_the_api_root_lists_the_collections_the_role_may_read(client, make_user):
    # given
    client.force_login(make_user("stella", role="data_steward"))
    # when
    response = client.get("/api/v1/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert sorted(body["collections"]) == [
        "accounts", "audit_history", "exceptions", "products", "replays"
    ]  # fmt: skip
    assert body["collections"]["accounts"] == "http://testserver/api/v1/accounts/"
    assert body["schema"] == "http://testserver/api/schema/"


@pytest.mark.django_db
def test_the_api_root_needs_a_signed_in_caller(client):
    # when
    response = client.get("/api/v1/")
    # then
    assert response.status_code in (401, 403)
    assert "collections" not in response.json()


def test_the_favicon_is_served_where_browsers_ask_for_it(client):
    # when
    response = client.get("/favicon.ico")
    # then
    assert response.status_code == 302
    assert response["Location"] == static("favicon.svg")
