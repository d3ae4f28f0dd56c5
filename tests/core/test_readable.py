"""The filters every page reads money and times through."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.test import override_settings

from core.money import Money
from core.templatetags.readable import money, when


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (Decimal("41300"), "EUR", "41,300.00 EUR"),
        (Decimal("1234567.891"), "USD", "1,234,567.89 USD"),
        (Decimal("0"), "GBP", "0.00 GBP"),
        (Decimal("-1500.5"), "GBP", "-1,500.50 GBP"),
        (Decimal("150000"), "JPY", "150,000 JPY"),
        (Decimal("12.3456"), "KWD", "12.346 KWD"),
        (Money(Decimal("41300.0000"), "CHF"), "", "41,300.00 CHF"),
        (None, "EUR", "—"),
    ],
)
def test_money_has_thousands_separators_the_currencys_places_and_its_code(value, currency, shown):
    assert money(value, currency) == shown


def test_templates_read_money_and_times_without_loading_anything():
    # given
    template = Template("{{ amount|money:currency }} · {{ at|when }}")
    at = dt.datetime(2026, 12, 7, 15, 4, 5, tzinfo=dt.UTC)
    # when
    shown = template.render(Context({"amount": Decimal("41300"), "currency": "EUR", "at": at}))
    # then
    assert shown == "41,300.00 EUR · 2026-12-07 15:04:05 UTC"


@override_settings(TIME_ZONE="Europe/Berlin")
def test_times_are_shown_in_the_display_time_zone_which_is_named():
    at = dt.datetime(2026, 12, 7, 15, 4, 5, tzinfo=dt.UTC)
    assert when(at) == "2026-12-07 16:04:05 CET"
    assert when(None) == "—"
