"""Saved views: a person saves a list's filters under a name, sees them under that list's
filter bar, opens them in one click and deletes them; nobody sees or deletes another's, and
only the console's lists can be saved."""

from __future__ import annotations

import pytest
from django.urls import reverse

from console.models import SavedView

LISTS = [
    "order-list",
    "contract-list",
    "invoice-list",
    "exception-list",
    "replay-list",
    "account-list",
    "duplicate-list",
    "merge-list",
    "dead-letter-list",
    "reconciliation",
    "audit-history",
    "audit-operators",
]


@pytest.mark.django_db
def test_filters_saved_by_name_are_listed_under_the_filter_bar_and_open_again(client, make_user):
    # given: sam filtered the orders (htmx pushed the filters into the address bar)
    sam = make_user("sam", role="sales_ops")
    client.force_login(sam)
    shown = reverse("order-list")
    now = f"http://testserver{shown}?state=provisioning&stuck=1&page=3"
    # when: sam saves them from the page rendered before filtering
    response = client.post(
        reverse("saved-view-save"), {"name": "  Stuck  provisioning ", "url": shown},
        HTTP_REFERER=now,
    )  # fmt: skip
    page = client.get(shown).content.decode()
    # then: saved with the filters of the address bar (not the page number), opened at once
    view = SavedView.objects.get(user=sam)
    assert (view.name, view.path, view.query) == (
        "Stuck provisioning", shown, "state=provisioning&stuck=1"
    )  # fmt: skip
    assert response.status_code == 302
    assert response["Location"] == f"{shown}?state=provisioning&stuck=1"
    assert f'<a href="{shown}?state=provisioning&amp;stuck=1">Stuck provisioning</a>' in page
    # and: saving the same name again replaces the filters
    client.post(
        reverse("saved-view-save"), {"name": "Stuck provisioning", "url": shown},
        HTTP_REFERER=f"http://testserver{shown}?state=received",
    )  # fmt: skip
    assert list(SavedView.objects.values_list("query", flat=True)) == ["state=received"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", LISTS)
def test_every_list_offers_its_saved_views(client, make_user, name):
    # given: an auditor sees every list
    user = make_user("ada", role="auditor")
    client.force_login(user)
    path = reverse(name)
    SavedView.objects.create(user=user, name="mine", path=path, query="q=x")
    # when
    response = client.get(path)
    # then
    if response.status_code == 403:  # this role may not see the list: nothing to offer
        return
    page = response.content.decode()
    assert f'<a href="{path}?q=x">mine</a>' in page
    assert 'name="name"' in page and reverse("saved-view-save") in page


@pytest.mark.django_db
def test_each_person_sees_and_deletes_only_their_own(client, make_user):
    # given
    sam = make_user("sam", role="sales_ops")
    fiona = make_user("fiona", role="finance_ops")
    path = reverse("order-list")
    sams = SavedView.objects.create(user=sam, name="sam's", path=path, query="state=active")
    client.force_login(fiona)
    # when: fiona looks at the orders and tries to delete sam's view
    page = client.get(path).content.decode()
    response = client.post(reverse("saved-view-delete", args=[sams.pk]))
    # then
    assert "sam&#x27;s" not in page
    assert response.status_code == 404
    assert SavedView.objects.filter(pk=sams.pk).exists()
    # when: sam deletes it
    client.force_login(sam)
    response = client.post(reverse("saved-view-delete", args=[sams.pk]))
    # then
    assert (response.status_code, response["Location"]) == (302, path)
    assert not SavedView.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "url", "message"),
    [
        ("", "/orders/?state=x", "a saved view needs a name of 1 to 60 characters"),
        ("x" * 61, "/orders/", "a saved view needs a name of 1 to 60 characters"),
        ("admin", "/admin/", "only the console&#x27;s lists can be saved as views"),
        ("away", "https://evil.example/orders/", "only the console&#x27;s lists can be saved"),
        ("long", "/orders/?q=" + "x" * 1200, "these filters are too long to save"),
    ],
)
def test_bad_views_are_refused_with_a_message(client, make_user, name, url, message):
    # given
    client.force_login(make_user("sam", role="sales_ops"))
    # when
    response = client.post(reverse("saved-view-save"), {"name": name, "url": url}, follow=True)
    # then
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SavedView.objects.exists()


@pytest.mark.django_db
def test_a_person_without_a_role_cannot_save_views(client, make_user):
    client.force_login(make_user("nobody"))
    response = client.post(reverse("saved-view-save"), {"name": "x", "url": "/orders/"})
    assert response.status_code == 403
    assert not SavedView.objects.exists()
