"""Properties of the value parsers: the Tryton JSON-RPC codec, money and minor units, ids and
dates from query strings, and the JSON depth scan. Round trips hold; hostile input is refused
with the documented error (or None), never another exception."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from core.money import ISO_4217, Money
from core.params import FIRST_DAY, LAST_DAY, date_from, id_from, json_depth
from orchestration.connectors.errors import PermanentError
from orchestration.connectors.minor_units import decimal_from_minor_units, minor_units_from
from orchestration.connectors.tryton.codec import rpc_decode, rpc_encode, rpc_error
from orchestration.models import OutboundOutcome
from tests.fuzz.conftest import fuzz_settings, json_values

CURRENCIES = sorted(ISO_4217)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=6,
                       min_value=Decimal("-1e15"), max_value=Decimal("1e15"))  # fmt: skip
tryton_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | decimals | st.dates()
    | st.datetimes().map(lambda moment: moment.replace(tzinfo=dt.UTC)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8).filter(lambda key: key != "__class__"), children,
                      max_size=4),
    max_leaves=10,
)  # fmt: skip


@given(value=tryton_values)
@fuzz_settings(500)
def test_tryton_values_survive_encoding_json_and_decoding(value):
    # when: what Tandem sends is what Tryton reads back and answers
    wire = json.loads(json.dumps(rpc_encode(value)))
    # then
    assert rpc_decode(wire) == value


@given(body=json_values | st.fixed_dictionaries({"error": json_values}))
@fuzz_settings(500)
def test_any_tryton_answer_is_classed_or_not_an_error_never_a_crash(body):
    # when
    classed = rpc_error(body)
    # then
    if classed is not None:
        outcome, kind, message = classed
        assert outcome in OutboundOutcome.values
        assert kind and isinstance(message, str) and len(message) <= 600


@given(
    units=st.integers(min_value=-(10**15), max_value=10**15), currency=st.sampled_from(CURRENCIES)
)
@fuzz_settings(500)
def test_minor_units_round_trip_in_every_currency(units, currency):
    # when
    amount = decimal_from_minor_units(units, currency)
    # then
    assert minor_units_from(amount, currency, system="billing") == units
    assert -amount.as_tuple().exponent == ISO_4217[currency]


@given(amount=st.decimals() | st.floats() | st.integers() | st.text(max_size=10),
       currency=st.sampled_from(CURRENCIES) | st.text(max_size=4))  # fmt: skip
@fuzz_settings(500)
def test_minor_units_of_anything_are_exact_or_refused(amount, currency):
    # when / then
    try:
        units = minor_units_from(amount, currency, system="billing")
    except PermanentError as exc:
        assert exc.kind == "validation"
        return
    assert isinstance(units, int)
    if abs(units) < 10**18:  # within the amounts Tandem stores (18 digits)
        assert decimal_from_minor_units(units, currency) == amount


@given(a=decimals, b=decimals, currency=st.sampled_from(CURRENCIES))
@fuzz_settings(300)
def test_money_adds_exactly_and_refuses_what_is_not_an_amount(a, b, currency):
    # then
    assert (Money(a, currency) + Money(b, currency)).amount == a + b
    assert (Money(a, currency) - Money(a, currency)).amount == 0


@given(amount=st.decimals() | st.text(max_size=12) | st.integers(),
       currency=st.text(max_size=4))  # fmt: skip
@fuzz_settings(300)
def test_money_from_anything_is_money_or_a_validation_error(amount, currency):
    # when / then
    try:
        money = Money(amount, currency)
    except ValidationError:
        return
    assert money.amount.is_finite() and money.currency in ISO_4217


@given(number=st.integers(min_value=0, max_value=10**18 - 1))
@fuzz_settings(300)
def test_an_id_round_trips_through_its_query_string_form(number):
    # then
    assert id_from(str(number)) == number


@given(text=st.text(max_size=30))
@fuzz_settings(500)
def test_a_query_string_id_or_date_is_a_value_in_range_or_none(text):
    # when
    number, day = id_from(text), date_from(text)
    # then
    assert number is None or (0 <= number < 10**18 and text.isascii())
    assert day is None or FIRST_DAY <= day <= LAST_DAY


@given(day=st.dates(min_value=FIRST_DAY, max_value=LAST_DAY))
@fuzz_settings(300)
def test_a_date_round_trips_through_its_query_string_form(day):
    # then
    assert date_from(day.isoformat()) == day


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


@given(value=json_values)
@fuzz_settings(500)
def test_json_depth_read_without_parsing_equals_the_parsed_depth(value):
    # then
    assert json_depth(json.dumps(value).encode()) == _depth(value)


@given(raw=st.binary(max_size=500))
@fuzz_settings(300)
def test_json_depth_of_any_bytes_is_a_number(raw):
    # then
    assert json_depth(raw) >= 0 or raw.count(b"]") + raw.count(b"}") > 0


@pytest.mark.parametrize("currency", ["JPY", "GBP", "KWD"])
def test_minor_units_refuse_more_decimals_than_the_currency_has(currency):
    # given
    too_fine = Decimal(1).scaleb(-(ISO_4217[currency] + 1))
    # when / then
    with pytest.raises(PermanentError, match="more decimals"):
        minor_units_from(too_fine, currency, system="billing")


@pytest.mark.parametrize("amount", [Decimal("sNaN"), Decimal("NaN"), Decimal("1E+999999")])
def test_minor_units_refuse_a_nan_or_an_overflowing_amount(amount):
    # when / then (a signalling NaN and an overflow raised decimal's own errors before)
    with pytest.raises(PermanentError, match="more decimals"):
        minor_units_from(amount, "GBP", system="billing")
