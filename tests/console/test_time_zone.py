"""Each person picks the time zone the console shows times in (the site's zone by default,
named either way); a zone that does not exist is refused with a message, nothing changed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from console.models import DisplayPreference
from q2c.models import Order
from tests import factories

AT = dt.datetime(2026, 12, 7, 15, 4, 5, tzinfo=dt.UTC)


def order_page(client, order: Order) -> str:  # type: ignore[no-untyped-def]
    return client.get(reverse("order-detail", args=[order.enterprise_id])).content.decode()


@pytest.mark.django_db
def test_times_follow_the_zone_each_person_picks(client, make_user):
    # given: an order created at 15:04:05 UTC, two people looking at it
    order = factories.order()
    Order.objects.filter(pk=order.pk).update(state_changed_at=AT)  # test setup: a known time
    sam = make_user("sam", role="sales_ops")
    fiona = make_user("fiona", role="finance_ops")
    client.force_login(sam)
    # when: sam picks Tokyo; fiona keeps the site's zone
    response = client.post(reverse("time-zone-preference"), {"time_zone": "Asia/Tokyo"})
    sam_sees = order_page(client, order)
    client.force_login(fiona)
    fiona_sees = order_page(client, order)
    # then
    assert response.status_code == 302
    assert "2026-12-08 00:04:05 JST" in sam_sees
    assert "2026-12-07 15:04:05 UTC" in fiona_sees
    assert "JST" not in fiona_sees


@pytest.mark.django_db
def test_the_zone_is_kept_for_the_next_sign_in_and_can_be_reset(client, make_user):
    # given: sam chose Paris in an earlier session
    order = factories.order()
    Order.objects.filter(pk=order.pk).update(state_changed_at=AT)  # test setup: a known time
    sam = make_user("sam", role="sales_ops")
    DisplayPreference.objects.create(user=sam, time_zone="Europe/Paris")
    client.force_login(sam)
    # when / then: a fresh session reads the preference
    assert "2026-12-07 16:04:05 CET" in order_page(client, order)
    home = client.get(reverse("home")).content.decode()
    assert '<option value="Europe/Paris" selected>' in home
    # when: sam goes back to the site's zone
    client.post(reverse("time-zone-preference"), {"time_zone": ""})
    # then
    assert "2026-12-07 15:04:05 UTC" in order_page(client, order)
    assert DisplayPreference.objects.get(user=sam).time_zone == ""


@pytest.mark.django_db
def test_an_unknown_zone_is_refused_and_nothing_changes(client, make_user):
    # given
    sam = make_user("sam", role="sales_ops")
    DisplayPreference.objects.create(user=sam, time_zone="Europe/Paris")
    client.force_login(sam)
    # when
    response = client.post(
        reverse("time-zone-preference"), {"time_zone": "Mars/Olympus_Mons"}, follow=True
    )
    # then
    assert "unknown time zone &#x27;Mars/Olympus_Mons&#x27;" in response.content.decode()
    assert DisplayPreference.objects.get(user=sam).time_zone == "Europe/Paris"


@pytest.mark.django_db
def test_a_person_without_a_role_cannot_set_a_zone(client, make_user):
    client.force_login(make_user("nobody"))
    response = client.post(reverse("time-zone-preference"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 403
    assert not DisplayPreference.objects.exists()
