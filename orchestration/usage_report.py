"""Usage to billing: each period report that billing has not fully received is sent as the
difference (a ``UsageDelivery``) against the contract's billing subscription, at the metered
price of the version's unit price.

The delivery and its key are committed before the call, and only one is pending per report:
a retry after a lost answer sends the same key, which billing keeps once, and the delta is
added to what billing has (``reported_quantity``) only when billing confirmed it. A later
correction makes a new delta under a new key. No HTTP inside a transaction or a lock.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.audit import Actor, audit_context
from core.money import ISO_4217
from core.problems import Category, Problem, Severity, Team, problem_raise
from masterdata.models import ExternalId, ProductMapping
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.registry import connector_for
from q2c import usage as usage_services
from q2c.models import DeliveryState, UsageDelivery, UsageReport, UsageReportState

USAGE_REPORT_MAX_ATTEMPTS = 8


class UsageReportRetry(Exception):
    """Billing could not take the report now; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _actor() -> Actor:
    return Actor.system("connector:billing")


def _delivery_prepare(report_id: int) -> UsageDelivery | None:
    """The report's pending delivery, made now for its delta when there is none (committed
    before anything is sent). None when the report has nothing to send."""
    actor = _actor()
    with transaction.atomic(), audit_context(actor=actor, reason="usage period to report"):
        report = UsageReport.objects.select_for_update().get(pk=report_id)
        if report.state != UsageReportState.PENDING:
            return None
        pending = report.deliveries.filter(state=DeliveryState.PENDING).first()
        if pending is not None:
            return pending
        delta = report.quantity - report.reported_quantity
        if delta == 0:
            report.state = UsageReportState.REPORTED
            report.save()
            return None
        sequence = (report.deliveries.aggregate(last=Max("sequence"))["last"] or 0) + 1
        amount = (report.amount - report.reported_amount).quantize(Decimal("0.0001"))
        return UsageDelivery.objects.create(
            report=report,
            sequence=sequence,
            key=f"{report.key}-{sequence}",
            quantity=delta,
            amount=amount,
        )


def _metered_price_id(billing: Any, report: UsageReport, delivery: UsageDelivery) -> str:
    mapping = ProductMapping.objects.filter(product=report.product, system="billing").first()
    if mapping is None:
        raise PermanentError(
            f"{report.product.sku} has no billing mapping", system="billing", kind="mapping"
        )
    places = Decimal(1).scaleb(-ISO_4217[report.currency])
    unit = report.unit_price.quantize(places, rounding=ROUND_HALF_EVEN)
    if unit != report.unit_price:
        raise PermanentError(
            f"usage price {report.unit_price} {report.currency} is finer than the currency's "
            "minor unit; billing prices cannot hold it",
            system="billing",
            kind="validation",
        )
    price = billing.price_ensure(
        lookup_key=f"{mapping.external_id}:{report.currency}:{unit}:month:metered",
        product_name=f"{report.product.name} (usage)",
        currency=report.currency,
        unit_amount=unit,
        interval="month",
        usage_type="metered",
        idempotency_key=f"{delivery.key}:price",
    )
    return str(price.id)


def _subscription_id(report: UsageReport) -> str:
    link = (
        ExternalId.objects.filter(
            system="billing",
            object_type="subscription",
            enterprise_id=report.contract.enterprise_id,
        )
        .order_by("pk")
        .first()
    )
    if link is None:
        raise RetryableError(
            f"{report.contract.enterprise_id} has no billing subscription yet",
            system="billing",
            kind="not_ready",
        )
    return link.external_id


def usage_report_send(*, report_id: int, final_attempt: bool = False) -> str:
    """Send what billing lacks of one period report (outside any transaction); returns the
    report's state afterwards.

    A retryable failure raises ``UsageReportRetry`` (the task retries it) and leaves the
    delivery pending under its key; the last attempt, or a permanent refusal, marks the report
    ``failed`` with an exception for finance. Nothing is sent for a report that is not
    pending.
    """
    delivery = _delivery_prepare(report_id)
    if delivery is None:
        return str(UsageReport.objects.get(pk=report_id).state)
    report = UsageReport.objects.select_related("contract", "product").get(pk=report_id)
    error, retryable, retry_after = "", False, None
    remote_id = ""
    try:
        billing: Any = connector_for("billing")
        found = billing.usage_report_find(key=delivery.key)
        if found is None:
            found = billing.usage_report_create(
                key=delivery.key,
                subscription_id=_subscription_id(report),
                price_id=_metered_price_id(billing, report, delivery),
                quantity=delivery.quantity,
                period_start=report.period_start,
                period_end=report.period_end,
            )
        remote_id = found.id
    except RetryableError as exc:
        error, retryable, retry_after = str(exc), True, exc.retry_after
    except PermanentError as exc:
        error = str(exc)
    state = _outcome_record(
        delivery_id=delivery.pk,
        remote_id=remote_id,
        error=error,
        give_up=bool(error) and (not retryable or final_attempt),
    )
    if error and retryable and not final_attempt:
        raise UsageReportRetry(error, retry_after=retry_after)
    return state


def _outcome_record(*, delivery_id: int, remote_id: str, error: str, give_up: bool) -> str:
    actor = _actor()
    reason = "usage reported to billing" if not error else "usage report to billing failed"
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        delivery = UsageDelivery.objects.select_for_update().get(pk=delivery_id)
        report = UsageReport.objects.select_for_update().get(pk=delivery.report_id)
        if delivery.state != DeliveryState.PENDING:  # another worker recorded it first
            return str(report.state)
        delivery.attempts += 1
        if not error:
            delivery.state = DeliveryState.SENT
            delivery.external_id = remote_id
            delivery.sent_at = timezone.now()
            delivery.error = ""
            delivery.save()
            report.reported_quantity += delivery.quantity
            report.reported_amount += delivery.amount
            report.last_error = ""
            report.state = usage_services.report_state(
                report, quantity=report.quantity, today=timezone.now().date()
            )
            report.save()
            if report.state == UsageReportState.PENDING:  # a correction came in meanwhile
                pk = report.pk
                transaction.on_commit(lambda: _enqueue(pk))
            return str(report.state)
        delivery.error = error[:2000]
        if give_up:
            delivery.state = DeliveryState.FAILED
            report.state = UsageReportState.FAILED
            _report_exception(report, delivery, actor=actor)
        delivery.save()
        report.last_error = error[:2000]
        report.save()
        return str(report.state)


def _report_exception(report: UsageReport, delivery: UsageDelivery, *, actor: Actor) -> None:
    problem_raise(
        Problem(
            category=Category.DOWNSTREAM_API,
            severity=Severity.HIGH,
            team=Team.FINANCE_OPS,
            system="billing",
            step="usage_report",
            error_class="UsageReportFailed",
            message=f"usage of {report.product.sku} for {report.period_start:%Y-%m} on "
            f"{report.contract.enterprise_id} ({delivery.quantity} units, key {delivery.key}) "
            f"was not reported to billing: {delivery.error[:500]}",
            correlation_id=report.contract.enterprise_id,
            context={"usage_report": report.pk, "delivery": delivery.key},
        ),
        actor=actor,
        reason=f"usage report {delivery.key} failed",
    )


def _enqueue(report_id: int) -> None:
    from orchestration.tasks import usage_report_send as task

    task.delay(report_id)


def usage_reports_sweep() -> int:
    """Close the months that ended (their reports become pending) and send every pending
    report again: a lost broker message or an exhausted retry chain is picked up here.
    Returns how many reports were enqueued."""
    usage_services.usage_reports_close(today=timezone.now().date(), actor=Actor.system("worker"))
    pending = list(
        UsageReport.objects.filter(state=UsageReportState.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in pending:
        _enqueue(pk)
    return len(pending)
