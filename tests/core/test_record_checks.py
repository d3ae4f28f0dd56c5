"""Check constraints evaluated in Python by ``record_full_clean``: the same verdict and the
same message as Django's database check, without a query for each constraint."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F, Q, Value
from django.test.utils import CaptureQueriesContext

from core.errors import Refused
from core.records import constraint_holds, record_full_clean
from q2c.models import OrderLine

LINE: dict[str, Any] = {
    "line_no": 1, "product_code": "PLAT", "kind": "recurring", "quantity": Decimal("5"),
    "unit_price": Decimal("40.00"), "discount_percent": Decimal("10"), "billing_period": "month",
    "term_start": dt.date(2026, 1, 1), "term_end": dt.date(2026, 12, 31), "amount": Decimal("180"),
}  # fmt: skip
CHECKED_HERE = ["order", "product"]  # their foreign-key checks are queries either way


def _values(**values: Any) -> dict[str, Any]:
    return {name: Value(value) for name, value in values.items()}


@pytest.mark.parametrize(
    ("condition", "values", "expected"),
    [
        (Q(quantity__gte=0), {"quantity": Decimal("-1")}, False),
        (Q(quantity__gte=0), {"quantity": Decimal("0")}, True),
        (Q(quantity__gte=0), {"quantity": None}, True),  # NULL: unknown, which passes
        (Q(a__gte=0) & Q(a__lte=100), {"a": Decimal("100.5")}, False),
        (Q(end__isnull=True) | Q(end__gte=F("start")),
         {"end": dt.date(2026, 1, 1), "start": dt.date(2026, 2, 1)}, False),
        (Q(end__isnull=True) | Q(end__gte=F("start")), {"end": None, "start": dt.date(2026, 2, 1)},
         True),
        (~Q(state="on_hold") | ~Q(held_from=""), {"state": "on_hold", "held_from": ""}, False),
        (~Q(state="on_hold") | ~Q(held_from=""), {"state": "active", "held_from": ""}, True),
        (Q(decided__isnull=True) | ~Q(decided=F("requested")), {"decided": 4, "requested": 4},
         False),
        (Q(quantity__gte=0), {}, True),  # a field left out of validation: not checked
        (Q(name__gte="m"), {"name": "k"}, None),  # text order is the database's collation
        (Q(name__startswith="A"), {"name": "Bo"}, None),  # a lookup only the database knows
    ],
)  # fmt: skip
def test_a_condition_is_decided_here_or_left_to_the_database(condition, values, expected):
    # when
    holds = constraint_holds(condition, _values(**values))
    # then
    assert holds is expected


@pytest.mark.django_db
def test_a_line_out_of_range_is_refused_with_the_constraints_message_and_no_query():
    # given
    line = OrderLine(**{**LINE, "discount_percent": Decimal("150"), "quantity": Decimal("-2")})
    # when
    with CaptureQueriesContext(connection) as queries, pytest.raises(Refused) as refused:
        record_full_clean(line, exclude=CHECKED_HERE)
    # then
    with pytest.raises(ValidationError) as django_says:
        line.full_clean(exclude=CHECKED_HERE)
    assert sorted(refused.value.message.split("; ")) == sorted(django_says.value.messages)
    assert "orderline_discount_in_range" in refused.value.message
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_a_valid_line_passes_without_a_query():
    # given
    line = OrderLine(**LINE)
    # when
    with CaptureQueriesContext(connection) as queries:
        record_full_clean(line, exclude=CHECKED_HERE)
    # then
    assert queries.captured_queries == []
    line.full_clean(exclude=CHECKED_HERE)  # Django's own database checks agree
