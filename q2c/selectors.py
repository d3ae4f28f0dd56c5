"""Reads of the commercial records that more than one screen needs."""

from __future__ import annotations

from django.db.models import Count, Q

from q2c.models import Contract, DeliveryState, UsageReport

USAGE_PERIODS_SHOWN = 24


def contract_usage_reports(
    *, contract: Contract, limit: int = USAGE_PERIODS_SHOWN
) -> list[UsageReport]:
    """The contract's usage per period (newest month first, then product), with the version
    each was rated against, its product and how many reports billing has received (``sent``).
    One query."""
    return list(
        UsageReport.objects.filter(contract=contract)
        .select_related("product", "contract_version")
        .annotate(sent=Count("deliveries", filter=Q(deliveries__state=DeliveryState.SENT)))
        .order_by("-period_start", "product__sku", "contract_version__number")[:limit]
    )
