"""Money: Decimal amounts in ISO 4217 currencies, never floats, in Python and in the database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, transaction

from core.audit import audit_context
from core.errors import Refused
from core.money import CurrencyMismatch, Money
from core.records import LineKind
from q2c import services
from q2c.models import Invoice, InvoiceLine, Order, OrderLine, UsageRecord
from tests import factories
from tests.q2c.helpers import database_snapshot, usage_record

# --- Money in Python --------------------------------------------------------------------------


def test_money_refuses_a_float():
    # given
    amount = 19.99
    # when
    with pytest.raises(TypeError) as refused:
        Money(amount, "EUR")  # type: ignore[arg-type]
    # then
    assert str(refused.value) == "money amounts are Decimal, never float"


@pytest.mark.parametrize("code", ["XYZ", "eur", "EURO", "", "E1R"])
def test_money_refuses_an_unknown_currency(code):
    # given
    amount = Decimal("10.00")
    # when
    with pytest.raises(ValidationError) as refused:
        Money(amount, code)
    # then
    assert refused.value.messages == [f"{code} is not an ISO 4217 currency code"]


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "'abc' is not a decimal amount"),
        ("NaN", "money amounts must be finite"),
        ("Infinity", "money amounts must be finite"),
    ],
)
def test_money_refuses_what_is_not_a_finite_decimal(amount, message):
    # given
    value = amount
    # when
    with pytest.raises(ValidationError) as refused:
        Money(value, "EUR")  # type: ignore[arg-type]
    # then
    assert refused.value.messages == [message]


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
    ],
    ids=["add", "subtract", "less", "less-or-equal"],
)
def test_money_refuses_to_mix_currencies(combine):
    # given
    euros = Money(Decimal("10.00"), "EUR")
    dollars = Money(Decimal("10.00"), "USD")
    # when
    with pytest.raises(CurrencyMismatch) as refused:
        combine(euros, dollars)
    # then
    assert str(refused.value) == "cannot combine EUR with USD"


def test_money_adds_subtracts_and_multiplies_in_one_currency():
    # given
    price = Money(Decimal("19.99"), "EUR")
    # when
    total = price * 3 + Money(Decimal("0.03"), "EUR") - Money(Decimal("10"), "EUR")
    # then
    assert total == Money(Decimal("50.00"), "EUR")
    assert price * Decimal("0.5") == Money(Decimal("9.995"), "EUR")


def test_money_refuses_to_be_multiplied_by_a_float():
    # given
    price = Money(Decimal("19.99"), "EUR")
    # when
    with pytest.raises(TypeError) as refused:
        price * 1.5  # type: ignore[operator]
    # then
    assert str(refused.value) == "multiply money by a Decimal, never a float"


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        # JPY has no minor unit
        ("1234.5", "JPY", "1234"),
        ("1235.5", "JPY", "1236"),
        ("0.4", "JPY", "0"),
        # KWD has three decimals
        ("1.2345", "KWD", "1.234"),
        ("1.2355", "KWD", "1.236"),
        ("1.23451", "KWD", "1.235"),
        # EUR has two
        ("2.675", "EUR", "2.68"),
        ("2.665", "EUR", "2.66"),
        ("2.6651", "EUR", "2.67"),
        ("-2.665", "EUR", "-2.66"),
        ("7", "EUR", "7.00"),
    ],
)
def test_rounding_follows_the_currency_minor_units_half_even(amount, currency, rounded):
    # given
    money = Money(Decimal(amount), currency)
    # when
    result = money.rounded()
    # then
    assert str(result.amount) == rounded
    assert result.currency == currency


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [("1234567.891", "EUR", "1,234,567.89 EUR"), ("1234.5", "JPY", "1,234 JPY")],
)
def test_money_prints_rounded_with_its_currency(amount, currency, text):
    # given
    money = Money(Decimal(amount), currency)
    # when
    printed = str(money)
    # then
    assert printed == text


# --- Services refuse floats -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("quantity", "line 1: quantity must be a Decimal, got 1.5"),
        ("unit_price", "line 1: unit_price must be a Decimal, got 1.5"),
        ("discount_percent", "line 1: discount_percent must be a Decimal, got 1.5"),
    ],
)
def test_order_create_refuses_float_quantities_and_prices(field, message):
    # given
    account = factories.account()
    line = factories.line(**{field: 1.5})
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        services.order_create(
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
            lines=[line],
            actor=factories.actor(),
            reason="from CPQ",
        )
    # then
    assert refused.value.message == message
    assert database_snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["quantity", "unit_price"])
def test_invoice_create_refuses_float_quantities_and_prices(field):
    # given
    account = factories.account()
    values = {"quantity": Decimal("1"), "unit_price": Decimal("100.00"), field: 2.5}
    line = services.InvoiceLineInput(description="Support", **values)
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        services.invoice_create(
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
            lines=[line],
            actor=factories.actor(),
            reason="from billing",
        )
    # then
    assert refused.value.message == "invoice amounts are Decimal, never float"
    assert database_snapshot() == before


@pytest.mark.django_db
def test_order_create_refuses_an_unknown_currency():
    # given
    account = factories.account()
    before = database_snapshot()
    # when
    with pytest.raises(Refused) as refused:
        services.order_create(
            account=account,
            legal_entity=account.legal_entity,
            currency="eur",
            lines=[factories.line()],
            actor=factories.actor(),
            reason="from CPQ",
        )
    # then
    assert refused.value.message == "eur is not an ISO 4217 currency code"
    assert database_snapshot() == before


# --- The database's own checks, written around the services on purpose -----------------------


def _order_row(account, currency: str) -> Order:
    return Order.objects.create(
        enterprise_id="ORD-CHECK",
        account=account,
        legal_entity=account.legal_entity,
        currency=currency,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["eur", "EU", "E1R", ""])
def test_database_refuses_a_currency_that_is_not_three_capitals(code):
    # given
    account = factories.account()
    # when
    with (
        pytest.raises(IntegrityError) as refused,
        transaction.atomic(),
        audit_context(actor=factories.actor(), reason="direct write"),
    ):
        _order_row(account, code)
    # then
    assert "order_currency_iso" in str(refused.value)
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_database_refuses_a_four_letter_currency():
    """PostgreSQL refuses 'EURO' by the column's length (varchar(3)) before the CHECK runs;
    SQLite does not enforce lengths, so its CHECK constraint refuses it. Refused either way."""
    # given
    account = factories.account()
    expected = DataError if connection.vendor == "postgresql" else IntegrityError
    # when
    with pytest.raises(expected), transaction.atomic():
        _order_row(account, "EURO")
    # then
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_database_refuses_a_negative_order_line_quantity():
    # given
    order = factories.order()
    lines_before = list(order.lines.values_list("line_no", "quantity"))
    # when
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        OrderLine.objects.create(
            order=order,
            line_no=2,
            product_code="SKU-X",
            kind=LineKind.ONE_TIME,
            quantity=Decimal("-1"),
            unit_price=Decimal("10.00"),
        )
    # then
    assert "orderline_quantity_non_negative" in str(refused.value)
    assert list(order.lines.values_list("line_no", "quantity")) == lines_before


@pytest.mark.django_db
def test_database_refuses_a_negative_invoice_line_quantity():
    # given
    invoice = factories.invoice()
    # when
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        InvoiceLine.objects.create(
            invoice=invoice,
            line_no=2,
            description="Credit squeezed in",
            quantity=Decimal("-1"),
            unit_price=Decimal("10.00"),
            amount=Decimal("-10.00"),
        )
    # then
    assert "invoiceline_qty_non_neg" in str(refused.value)
    assert InvoiceLine.objects.filter(invoice=invoice).count() == 1


@pytest.mark.django_db
def test_database_refuses_a_negative_usage_quantity():
    # given
    contract = factories.contract()
    # when
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        usage_record(contract=contract, quantity=Decimal("-0.5"))
    # then
    assert "usage_quantity_non_neg" in str(refused.value)
    assert UsageRecord.objects.count() == 0


@pytest.mark.django_db
def test_database_refuses_an_invoice_paid_beyond_its_total():
    # given
    account = factories.account()
    # when
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        Invoice.objects.create(
            enterprise_id="INV-CHECK",
            account=account,
            legal_entity=account.legal_entity,
            currency="GBP",
            total_amount=Decimal("100.00"),
            amount_paid=Decimal("100.01"),
        )
    # then
    assert "invoice_not_overpaid" in str(refused.value)
    assert Invoice.objects.count() == 0
