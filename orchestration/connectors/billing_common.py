"""What every ``BillingApi`` client shares (the sandbox's and Stripe's).

Billing objects have no external id, so Tandem's references travel in their ``metadata``
under the keys below; the workflows and the event mapping read them back by the same keys.
Billing periods map onto Stripe-style ``(interval, interval_count)``; quantities are whole.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orchestration.connectors.errors import PermanentError
from orchestration.connectors.minor_units import decimal_from_minor_units

SYSTEM = "billing"
ACCOUNT_KEY = "tandem_account"
ORDER_KEY = "tandem_order"
CONTRACT_KEY = "tandem_contract"
AMENDMENT_KEY = "tandem_amendment"  # the amendment order whose change a subscription carries
# Tandem billing periods -> Stripe's (interval, interval_count); "" is a one-time price.
INTERVALS: dict[str, tuple[str, int] | None] = {
    "day": ("day", 1),
    "week": ("week", 1),
    "month": ("month", 1),
    "quarter": ("month", 3),
    "year": ("year", 1),
    "": None,
}


def reference_key(reference: str) -> str:
    """The metadata key a subscription's reference is kept under."""
    return CONTRACT_KEY if reference.startswith("CTR-") else ORDER_KEY


def subscription_metadata(reference: str, contract_reference: str = "") -> dict[str, str]:
    """The metadata a subscription is found by again: its order, and its contract if known."""
    metadata = {reference_key(reference): reference}
    if contract_reference:
        metadata[CONTRACT_KEY] = contract_reference
    return metadata


def interval_check(interval: str) -> tuple[str, int] | None:
    """Stripe's ``(interval, interval_count)`` for a billing period, ``None`` for one-time.

    Raises ``PermanentError`` (kind ``validation``) for a period billing does not know.
    """
    if interval not in INTERVALS:
        raise PermanentError(
            f"billing period {interval!r} is not one of {', '.join(map(repr, INTERVALS))}",
            system=SYSTEM,
            kind="validation",
        )
    return INTERVALS[interval]


def recurring_of(recurring: Any) -> tuple[str, int] | None:
    """A price's ``recurring`` object as ``(interval, interval_count)``, ``None`` if one-time."""
    if not recurring:
        return None
    return (str(recurring["interval"]), int(recurring.get("interval_count") or 1))


def whole_quantity(quantity: Decimal) -> int:
    """A subscription item's quantity as an integer; ``PermanentError`` unless whole and >= 1."""
    if quantity != quantity.to_integral_value() or quantity < 1:
        raise PermanentError(
            f"subscription quantity {quantity} is not a whole number of at least 1",
            system=SYSTEM,
            kind="validation",
        )
    return int(quantity)


def price_describe(price: dict[str, Any]) -> str:
    """``"12.50 EUR every 1 month"`` for a price given as currency, minor units and recurring."""
    amount = decimal_from_minor_units(price["unit_amount"], price["currency"])
    recurring = price["recurring"]
    per = "one-time" if recurring is None else f"every {recurring[1]} {recurring[0]}"
    metered = " metered" if price.get("usage_type") == "metered" else ""
    return f"{amount} {price['currency'].upper()} {per}{metered}"
