"""Decimal amounts to and from the integer minor units Stripe-like APIs speak."""

from __future__ import annotations

from decimal import Decimal, DecimalException

from core.money import ISO_4217
from orchestration.connectors.errors import PermanentError


def minor_units_from(amount: Decimal, currency: str, *, system: str) -> int:
    """``Decimal("1234.50")`` GBP -> ``123450``, by the currency's ISO 4217 minor units.

    Never rounds: an amount with more decimals than the currency has, an unknown currency or
    a float is refused with ``PermanentError`` (kind ``validation``) before any call.
    """
    code = currency.upper()
    if isinstance(amount, float) or not isinstance(amount, Decimal | int):
        raise PermanentError(
            f"amount {amount!r} must be a Decimal", system=system, kind="validation"
        )
    places = ISO_4217.get(code)
    if places is None:
        raise PermanentError(
            f"{currency!r} is not an ISO 4217 currency code", system=system, kind="validation"
        )
    try:
        scaled = Decimal(amount).scaleb(places)
        whole = scaled.is_finite() and scaled == scaled.to_integral_value()
    except DecimalException:  # a signalling NaN, an exponent beyond the context's range
        whole = False
    if not whole:
        raise PermanentError(
            f"{amount} {code} has more decimals than {code}'s {places} minor units",
            system=system,
            kind="validation",
        )
    return int(scaled)


def decimal_from_minor_units(value: int, currency: str) -> Decimal:
    """``123450`` GBP -> ``Decimal("1234.50")``."""
    places = ISO_4217.get(currency.upper(), 2)
    return Decimal(value).scaleb(-places).quantize(Decimal(1).scaleb(-places))
