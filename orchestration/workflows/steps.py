"""Helpers the workflows' steps share: the order a run is about, its lines and mappings, the
crosswalk, the order's state, and how a connector's failure becomes the engine's outcome.

A step runs outside any transaction; these helpers read the canonical records fresh and
write only through the services, so the audited history carries the acting system.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from core.audit import Actor
from core.errors import DATA_REFUSALS, Refused
from masterdata.models import Account, ProductMapping
from masterdata.services import records as md_services
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import BillingApi, Party, RemoteRecord
from orchestration.workflows.engine import StepContext
from orchestration.workflows.errors import StepFailed, StepRetryable
from q2c.models import Order, OrderLine


def system_actor(system: str = "") -> Actor:
    """The named system actor a step writes history as: ``connector:<system>``, or the worker."""
    return Actor.system(f"connector:{system}" if system else "worker")


def step_order(ctx: StepContext) -> Order:
    """The order the run is about (its subject), with its account, legal entity and quote."""
    return Order.objects.select_related("account", "legal_entity", "quote").get(
        enterprise_id=ctx.run.subject_id
    )


def order_lines(order: Order) -> list[OrderLine]:
    """The order's lines in line-number order, with their canonical products."""
    return list(order.lines.select_related("product").order_by("line_no"))


@contextlib.contextmanager
def connector_errors(*, category: str = "downstream_api", compensation: str = "") -> Iterator[None]:
    """Class a connector's failure for the engine: retry the transient, stop on the rest."""
    try:
        yield
    except RetryableError as exc:
        raise StepRetryable(
            str(exc),
            retry_after=exc.retry_after,
            waiting=exc.waiting,
            outbound_call_id=exc.outbound_call_id,
            # kept for when the retries run out: the exception is grouped by what went wrong
            error_class=f"{exc.system}.{exc.kind}",
        ) from exc
    except PermanentError as exc:
        raise StepFailed(
            str(exc),
            category=category,
            compensation=compensation,
            error_class=f"{exc.system}.{exc.kind}",
            outbound_call_id=exc.outbound_call_id,
        ) from exc


def order_advance(order: Order, wanted_from: str, service: Callable[..., Any], reason: str) -> None:
    """Advance the order with ``service`` if it is still in ``wanted_from``.

    An order already past that state is left alone, so a step that runs again (a redelivered
    message, a replay) does not move it twice. The history row names the worker and ``reason``.
    """
    # A fresh copy, not refresh_from_db(): django-fsm's refresh_from_db unprotects the state
    # field on the class for a moment, which races with other threads of a threads-pool worker
    # ("Direct state modification is not allowed").
    current = Order.objects.get(pk=order.pk)
    if current.state == wanted_from:
        service(order=current, actor=system_actor(), reason=reason)


def crosswalk_link(record: Any, system: str, object_type: str, external_id: str) -> None:
    """Record ``system``'s id for ``record`` in the crosswalk (a repeat is harmless).

    An id already linked to another record stops the step: ``StepFailed`` with category
    ``master_data`` (``CrosswalkConflict``), for a steward to sort out.
    """
    try:
        md_services.external_id_link(
            record=record, system=system, object_type=object_type, external_id=external_id,
            actor=system_actor(system), reason=f"{system} id recorded",
        )  # fmt: skip
    except Refused as exc:
        if exc.kind not in DATA_REFUSALS:
            raise
        raise StepFailed(
            exc.message, category="master_data", error_class="CrosswalkConflict"
        ) from exc


def product_mappings(order: Order) -> dict[tuple[int, str], ProductMapping]:
    """The ERP and billing mapping of each line's product, by (line number, system).

    A line whose product has no mapping in a system is absent for that system: the caller
    decides whether that is a failure (``map_products`` says so before anything is sent).
    """
    product_ids = [line.product_id for line in order_lines(order) if line.product_id]
    found = ProductMapping.objects.filter(product_id__in=product_ids)
    by_product = {(m.product_id, m.system): m for m in found}
    return {
        (line.line_no, system): by_product[(line.product_id, system)]
        for line in order_lines(order)
        for system in ("erp", "billing")
        if line.product_id and (line.product_id, system) in by_product
    }


def net_unit_price(line: OrderLine) -> Decimal:
    """The line's unit price after its discount, rounded to the cent."""
    net = line.unit_price - line.unit_price * line.discount_percent / Decimal(100)
    return net.quantize(Decimal("0.01"))


def line_price_ensure(
    billing: BillingApi, order: Order, line: OrderLine, *, mapping: ProductMapping, step_key: str
) -> RemoteRecord:
    """Billing's price for ``line``: its net unit price in the order's currency and period.

    The lookup key is the billing mapping's id, currency, net price and period, so every
    order at that price shares one price; it is created once (idempotency key
    ``<step key>:price:<line number>``). Raises what ``BillingApi.price_ensure`` raises.
    """
    return billing.price_ensure(
        lookup_key=(
            f"{mapping.external_id}:{order.currency}:{net_unit_price(line)}:{line.billing_period}"
        ),
        product_name=line.description or line.product_code,
        currency=order.currency,
        unit_amount=net_unit_price(line),
        interval=line.billing_period,
        idempotency_key=f"{step_key}:price:{line.line_no}",
    )


def party_of(account: Account) -> Party:
    """The customer as ERP and billing receive it, in the account's own legal entity."""
    return Party(
        reference=account.enterprise_id, name=account.legal_name, country=account.country,
        currency=account.currency, email=account.email, tax_id=account.tax_id,
        address_line1=account.address_line1, city=account.city, postcode=account.postcode,
        erp_subsidiary=account.legal_entity.erp_subsidiary if account.legal_entity else "",
    )  # fmt: skip
