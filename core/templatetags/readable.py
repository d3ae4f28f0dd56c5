"""Filters that make records readable the same way on every page: money with thousands
separators and its currency, one date-time format in the display time zone (named), and
labels for internal references. Loaded everywhere (``builtins`` in the template settings)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils import timezone

from core.money import ISO_4217, Money

register = template.Library()

DATE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@register.filter
def money(value: Any, currency: str = "") -> str:
    """``{{ order.total|money }}`` or ``{{ amount|money:currency }}`` → "41,300.00 USD": the
    currency's minor units, thousands separators, the code after; "—" for no amount."""
    if value is None or value == "":
        return "—"
    if isinstance(value, Money):
        return str(value)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if currency in ISO_4217:
        return str(Money(amount, currency))  # one format for money, wherever it is shown
    shown = f"{amount.quantize(Decimal('0.01')):,}"  # no currency (or an unknown one)
    return f"{shown} {currency}".strip()


@register.filter
def when(value: Any) -> str:
    """``{{ row.created_at|when }}`` → "2026-12-07 15:04:05 UTC": one format everywhere, in the
    signed-in person's time zone (chosen on the home page; else the site's ``TIME_ZONE``), which
    is named; "—" for no time."""
    if not isinstance(value, dt.datetime):
        return "—" if value in (None, "") else str(value)
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    zone = local.tzname() or timezone.get_current_timezone_name()
    return f"{local.strftime(DATE_TIME_FORMAT)} {zone}"
