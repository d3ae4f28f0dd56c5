"""Where a processed canonical event hands over to the canonical records and workflows.

``event_workflow_trigger`` runs inside the transaction that marks the event processed, so
what it creates (records, a workflow run, tasks sent on commit) exists exactly when the
event is marked processed. Every handler is safe to run twice: business keys (the CPQ quote
id, the crosswalk of external ids) find what an earlier delivery already created, and the
same business event under a new event id is absorbed as a duplicate with its reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from core.audit import Actor, audit_context
from core.errors import DATA_REFUSALS, Refused
from core.identifiers import PREFIXES
from core.money import Money
from core.problems import Category, Problem, Severity, Team, problem_raise
from masterdata.models import ExternalId, LegalEntity
from masterdata.selectors import external_id_resolve
from masterdata.services import records as md_services
from orchestration.events.errors import EventNotReady, EventRejected
from orchestration.models import InboundEvent
from orchestration.workflows.engine import (
    workflow_cancel_for_subject,
    workflow_signal,
    workflow_start,
)
from orchestration.workflows.lifecycle import change_workflow_start, versions_signal_due
from orchestration.workflows.models import WorkflowRun
from orchestration.workflows.receivables import KIND as RECEIVABLES_KIND
from orchestration.workflows.receivables import receivables_supported
from q2c import lifecycle, services
from q2c.models import (
    Contract,
    ContractState,
    Invoice,
    InvoiceState,
    Order,
    OrderState,
    Payment,
    Quote,
    VersionCause,
    VersionKind,
    VersionState,
)
from q2c.usage import usage_records_ingest, usage_row_parse

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _data_refusals_reject() -> Iterator[None]:
    """What the records refuse in the event's data rejects the event, with the refusal's
    message; any other refusal propagates and the event stays received, to be tried again."""
    try:
        yield
    except ValidationError as exc:  # a Money value built from the event (its currency)
        raise EventRejected("; ".join(exc.messages)) from exc
    except Refused as exc:
        if exc.kind not in DATA_REFUSALS:
            raise
        raise EventRejected(exc.message) from exc


def _decimal(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise EventRejected(f"{what} is not a decimal: {value!r}") from exc


def _date(value: Any) -> dt.date | None:
    return parse_date(value) if value else None


def _quote_approved(event: InboundEvent, data: dict[str, Any]) -> str:
    cpq_quote_id = data["cpq_quote_id"]
    existing = Quote.objects.filter(cpq_quote_id=cpq_quote_id).first()
    if existing is not None:
        return f"quote {cpq_quote_id} was already received as {existing.enterprise_id}"
    entity = LegalEntity.objects.filter(code=data["legal_entity_code"]).first()
    if entity is None:
        raise EventRejected(f"unknown legal entity code {data['legal_entity_code']!r}")
    approved_at = parse_datetime(data["approved_at"])
    if approved_at is None:
        raise EventRejected(f"approved_at is not a timestamp: {data['approved_at']!r}")
    lines = [
        services.LineInput(
            product_code=line["product_code"],
            kind=line["kind"],
            quantity=_decimal(line["quantity"], "quantity"),
            unit_price=_decimal(line["unit_price"], "unit_price"),
            description=line.get("description") or "",
            discount_percent=_decimal(line.get("discount_percent") or "0", "discount_percent"),
            billing_period=line.get("billing_period") or "",
            term_start=_date(line.get("term_start")),
            term_end=_date(line.get("term_end")),
        )
        for line in data["lines"]
    ]
    actor = Actor.system(f"connector:{event.system}")
    reason = f"quote approved in CPQ ({event.event_id})"
    with _data_refusals_reject():
        quote = services.quote_create(
            cpq_quote_id=cpq_quote_id,
            account=None,
            legal_entity=entity,
            currency=data["currency"],
            approved_at=approved_at,
            valid_until=_date(data.get("valid_until")),
            lines=lines,
            customer_snapshot=data["account"],
            actor=actor,
            reason=reason,
        )
        order = services.quote_convert_to_order(quote=quote, actor=actor, reason=reason)
        md_services.external_id_link(
            record=quote, system="cpq", object_type="quote", external_id=cpq_quote_id,
            actor=actor, reason=reason,
        )  # fmt: skip
    event.correlation_id = order.enterprise_id
    event.save(update_fields=["correlation_id"])
    workflow_start(kind="quote_to_cash", subject_id=order.enterprise_id, order=order, actor=actor)
    return ""


def _lines_in(data: dict[str, Any]) -> list[services.LineInput]:
    return [
        services.LineInput(
            product_code=line["product_code"],
            kind=line["kind"],
            quantity=_decimal(line["quantity"], "quantity"),
            unit_price=_decimal(line["unit_price"], "unit_price"),
            description=line.get("description") or "",
            discount_percent=_decimal(line.get("discount_percent") or "0", "discount_percent"),
            billing_period=line.get("billing_period") or "",
            term_start=_date(line.get("term_start")),
            term_end=_date(line.get("term_end")),
        )
        for line in data["lines"]
    ]


def _amendment_processed(event: InboundEvent, data: dict[str, Any]) -> str:
    """An amendment of an active contract: an amendment order and its workflow, once per
    amendment (its CPQ quote id, or the amendment id)."""
    cpq_quote_id = data.get("cpq_quote_id") or data["amendment_id"]
    existing = Quote.objects.filter(cpq_quote_id=cpq_quote_id).first()
    if existing is not None:
        return f"amendment {cpq_quote_id} was already received as {existing.enterprise_id}"
    contract = Contract.objects.filter(enterprise_id=data["contract_id"]).first()
    if contract is None:
        raise EventRejected(f"unknown contract {data['contract_id']}")
    if contract.state == ContractState.PENDING_ACTIVATION:
        raise EventNotReady(f"{contract.enterprise_id} is not active yet")
    effective_date = _date(data["effective_date"])
    if effective_date is None:
        raise EventRejected(f"effective_date is not a date: {data['effective_date']!r}")
    actor = Actor.system(f"connector:{event.system}")
    reason = f"amendment of {contract.enterprise_id} ({event.event_id})"
    lines = _lines_in(data)
    with _data_refusals_reject():
        order = services.amendment_order_create(
            contract=contract, cpq_quote_id=cpq_quote_id, effective_date=effective_date,
            approved_at=timezone.now(),
            lines=lines, actor=actor, reason=reason,
        )  # fmt: skip
        recorded = lifecycle.contract_change_record(
            contract=contract, kind=VersionKind.AMENDMENT, effective_date=effective_date,
            lines=[line for line in lines if line.kind == "recurring"], cause=VersionCause.ORDER,
            cause_ref=order.enterprise_id, change_key=f"amendment:{cpq_quote_id}",
            base_number=data.get("base_version"), order=order, actor=actor, reason=reason,
        )  # fmt: skip
    event.correlation_id = order.enterprise_id
    event.save(update_fields=["correlation_id"])
    if recorded.parked:  # stale: parked with an exception, never sent anywhere
        services.order_cancel(order=order, actor=actor, reason=recorded.version.parked_reason)
        return ""
    workflow_start(kind="amendment", subject_id=order.enterprise_id, order=order, actor=actor)
    # due at once when its date has come and its base is in effect; else the schedule tells it
    transaction.on_commit(lambda: versions_signal_due(contract=contract))
    return ""


def _contract_for_change(data: dict[str, Any]) -> Contract:
    contract = Contract.objects.filter(enterprise_id=data["contract_id"]).first()
    if contract is None:
        raise EventRejected(f"unknown contract {data['contract_id']}")
    if contract.state == ContractState.PENDING_ACTIVATION:
        raise EventNotReady(f"{contract.enterprise_id} is not active yet")
    return contract


def _renewal_processed(event: InboundEvent, data: dict[str, Any]) -> str:
    """A quoted renewal from CPQ: a renewal version for the new term and its workflow, once
    per renewal id; a renewal of a contract already renewing is parked (stale)."""
    contract = _contract_for_change(data)
    key = f"renewal:{data['renewal_id']}"
    if contract.versions.filter(change_key=key).exists():
        return f"renewal {data['renewal_id']} was already received"
    term_end = _date(data["term_end"])
    if term_end is None:
        raise EventRejected(f"term_end is not a date: {data['term_end']!r}")
    actor = Actor.system(f"connector:{event.system}")
    reason = f"quoted renewal of {contract.enterprise_id} ({event.event_id})"
    with _data_refusals_reject():
        recorded = lifecycle.contract_renewal_record(
            contract=contract, term_end=term_end, lines=_lines_in(data),
            cause=VersionCause.EVENT, cause_ref=str(data.get("cpq_quote_id") or data["renewal_id"]),
            change_key=key, actor=actor, reason=reason,
        )  # fmt: skip
    event.correlation_id = contract.enterprise_id
    event.save(update_fields=["correlation_id"])
    if not recorded.parked:
        change_workflow_start(version=recorded.version, actor=actor)
    return ""


def _cancellation_processed(event: InboundEvent, data: dict[str, Any]) -> str:
    """A cancellation from CPQ or billing: on its date with the unused period credited, or at
    term end (``mode``, or an effective date on or after the term's end), once per id."""
    contract = _contract_for_change(data)
    key = f"cancellation:{data['cancellation_id']}"
    if contract.versions.filter(change_key=key).exists():
        return f"cancellation {data['cancellation_id']} was already received"
    under_way = (
        contract.versions.filter(kind=VersionKind.CANCELLATION)
        .exclude(state=VersionState.PARKED)
        .order_by("number")
        .first()
    )
    if under_way is not None:
        # Billing reports the end of a subscription Tandem's own cancellation ended (or a
        # second cancellation arrives): one cancellation, one credit.
        return (
            f"{contract.enterprise_id} is already cancelled by v{under_way.number} "
            f"({under_way.cause_ref or under_way.cause})"
        )
    effective_date = _date(data["effective_date"])
    if effective_date is None:
        raise EventRejected(f"effective_date is not a date: {data['effective_date']!r}")
    mode = data.get("mode") or (
        lifecycle.CANCEL_AT_TERM_END
        if effective_date >= contract.end_date
        else lifecycle.CANCEL_NOW
    )
    actor = Actor.system(f"connector:{event.system}")
    reason = f"cancellation of {contract.enterprise_id}: {data['reason']} ({event.event_id})"
    with _data_refusals_reject():
        recorded = lifecycle.contract_cancellation_record(
            contract=contract, mode=mode, effective_date=effective_date,
            cause=VersionCause.EVENT, cause_ref=str(data["cancellation_id"]), change_key=key,
            base_number=data.get("base_version"), actor=actor, reason=reason,
        )  # fmt: skip
    event.correlation_id = contract.enterprise_id
    event.save(update_fields=["correlation_id"])
    if not recorded.parked:
        change_workflow_start(version=recorded.version, actor=actor)
    return ""


def _signal(order_id: str, event_type: str, data: dict[str, Any]) -> str:
    subject, _, version = order_id.partition(":v")
    if version.isdigit():  # a contract version's sale: "CTR-…:v3" (a renewal)
        run = WorkflowRun.objects.filter(subject_id=subject, subject_version=int(version)).first()
    else:
        run = WorkflowRun.objects.filter(
            kind__in=["quote_to_cash", "amendment"], subject_id=order_id
        ).first()
    if run is None:
        # Either the order is not started yet or the quote.approved that creates it is still
        # on its way (events arrive out of order): wait; the last retry rejects it, visibly.
        raise EventNotReady(f"{order_id} has no workflow yet")
    first_time = workflow_signal(run=run, event_type=event_type, payload=data)
    return "" if first_time else f"{event_type} for {order_id} was already received"


def _order_accepted(event: InboundEvent, data: dict[str, Any]) -> str:
    return _signal(data["order_id"], "order.accepted", data)


def _subscription_activated(event: InboundEvent, data: dict[str, Any]) -> str:
    contract = Contract.objects.filter(enterprise_id=data.get("contract_id") or "").first()
    if contract is not None and contract.order is not None:
        order_id = contract.order.enterprise_id
    else:
        # An order with subscriptions per billing period names them "ORD-…:<period>".
        order_id = str(data.get("order_id") or "").split(":", 1)[0]
    if not order_id:
        raise EventRejected(f"unknown contract {data.get('contract_id')}")
    return _signal(order_id, "subscription.activated", data)


def _invoice_posted(event: InboundEvent, data: dict[str, Any]) -> str:
    """Mirror a posted invoice as a canonical Invoice (once per external invoice id), with
    the contract version in force on its issue date; a billing invoice is then posted to the
    ERP's receivables. The ERP's own copy of an invoice Tandem posted there is absorbed."""
    external_id = data["external_invoice_id"]
    if ExternalId.objects.filter(
        system=event.system, object_type="invoice", external_id=external_id
    ).exists():
        return f"invoice {external_id} is already mirrored"
    posted_by_tandem = _posted_by_tandem(event, data)
    if posted_by_tandem:
        return posted_by_tandem
    order_id = str(data.get("order_id") or "").split(":", 1)[0]  # "ORD-…:<period>"
    order = Order.objects.filter(enterprise_id=order_id).first()
    contract = Contract.objects.filter(enterprise_id=data.get("contract_id") or "").first()
    if order is None and contract is not None:
        order = contract.order
    if order is None:
        raise EventNotReady(f"invoice {external_id} names no order or contract known yet")
    if order.account is None:
        raise EventNotReady(f"{order.enterprise_id} has no resolved customer yet")
    if contract is None:
        contract = order.contracts.order_by("pk").first()
    actor = Actor.system(f"connector:{event.system}")
    reason = f"invoice posted in {event.system} ({event.event_id})"
    lines = [
        services.InvoiceLineInput(
            description=line.get("description") or line.get("product_code") or "line",
            quantity=_decimal(line["quantity"], "quantity"),
            unit_price=_decimal(line["unit_price"], "unit_price"),
        )
        for line in data["lines"]
    ]
    issue_date = _date(data["issue_date"])
    version = (
        services.contract_version_on(contract=contract, day=issue_date)
        if contract is not None and issue_date is not None
        else None
    )
    with _data_refusals_reject(), audit_context(actor=actor, reason=reason):
        invoice = services.invoice_create(
            account=order.account, legal_entity=order.legal_entity,
            currency=data["currency"], lines=lines, contract=contract, order=order,
            number=data["invoice_number"], issue_date=issue_date,
            due_date=_date(data.get("due_date")), contract_version=version,
            tax_amount=_decimal(data["tax_amount"], "tax_amount"), actor=actor, reason=reason,
        )  # fmt: skip
        services.invoice_post(invoice=invoice, actor=actor, reason=reason)
        md_services.external_id_link(
            record=invoice, system=event.system, object_type="invoice",
            external_id=external_id, actor=actor, reason=reason,
        )  # fmt: skip
    _receivable_post(event, invoice.enterprise_id, invoice.order, actor)
    return ""


def _posted_by_tandem(event: InboundEvent, data: dict[str, Any]) -> str:
    """The ERP announces the invoices Tandem posts to its receivables too: such an invoice
    carries the canonical invoice's id as its reference and is already mirrored."""
    reference = str(data.get("tandem_reference") or "")
    if event.system != "erp" or not reference.startswith(f"{PREFIXES['invoice']}-"):
        return ""
    if not Invoice.objects.filter(enterprise_id=reference).exists():
        return ""
    return f"ERP invoice {data['external_invoice_id']} is {reference} posted by Tandem"


def _receivable_post(
    event: InboundEvent, subject_id: str, order: Order | None, actor: Actor
) -> None:
    """Post a record mirrored from billing or payments to the ERP's receivables (a workflow,
    once per record), when the ERP connector keeps receivables. Records the ERP itself sent
    are its own already."""
    if event.system == "erp" or not receivables_supported():
        return
    workflow_start(kind=RECEIVABLES_KIND, subject_id=subject_id, order=order, actor=actor)


def _invoice_by_external_id(event: InboundEvent, external_invoice_id: str) -> Invoice | None:
    for system in ("billing", "erp", event.system):
        found = external_id_resolve(
            system=system, object_type="invoice", external_id=external_invoice_id
        )
        if isinstance(found, Invoice):
            return found
    return None


def _payment_received(event: InboundEvent, data: dict[str, Any]) -> str:
    external_id = data["external_payment_id"]
    if ExternalId.objects.filter(
        system=event.system, object_type="payment", external_id=external_id
    ).exists():
        return f"payment {external_id} is already recorded"
    invoice = None
    if data.get("external_invoice_id"):
        invoice = _invoice_by_external_id(event, data["external_invoice_id"])
    if invoice is None:
        raise EventNotReady(f"payment {external_id}: its invoice is not mirrored yet")
    actor = Actor.system(f"connector:{event.system}")
    reason = f"payment received in {event.system} ({event.event_id})"
    received_at = parse_datetime(data["received_at"])
    if received_at is None:
        raise EventRejected(f"received_at is not a timestamp: {data['received_at']!r}")
    with _data_refusals_reject():
        payment: Payment = services.payment_record(
            account=invoice.account,
            amount=Money(_decimal(data["amount"], "amount"), data["currency"]),
            received_at=received_at, method=data.get("method") or "", actor=actor, reason=reason,
        )  # fmt: skip
        md_services.external_id_link(
            record=payment, system=event.system, object_type="payment", external_id=external_id,
            actor=actor, reason=reason,
        )  # fmt: skip
        if invoice.state in (InvoiceState.POSTED, InvoiceState.PARTIALLY_PAID):
            services.payment_apply(payment=payment, invoice=invoice, actor=actor, reason=reason)
    if payment.invoice_id is not None:
        _receivable_post(event, payment.enterprise_id, invoice.order, actor)
    return ""


def _timestamp(data: dict[str, Any], name: str) -> dt.datetime:
    moment = parse_datetime(data[name])
    if moment is None:
        raise EventRejected(f"{name} is not a timestamp: {data[name]!r}")
    return moment


def _invoice_voided(event: InboundEvent, data: dict[str, Any]) -> str:
    """Billing voided an open invoice: its canonical invoice is void (once)."""
    external_id = data["external_invoice_id"]
    invoice = _invoice_by_external_id(event, external_id)
    if invoice is None:
        raise EventNotReady(f"invoice {external_id} is not mirrored yet")
    if invoice.state == InvoiceState.VOID:
        return f"{invoice.enterprise_id} is already void"
    actor = Actor.system(f"connector:{event.system}")
    why = data.get("reason") or f"voided in {event.system}"
    with _data_refusals_reject():
        services.invoice_void(
            invoice=invoice, actor=actor, reason=f"{why} ({event.event_id})"[:500]
        )
    return ""


def _payment_failed(event: InboundEvent, data: dict[str, Any]) -> str:
    """A failed payment attempt: a payment in ``failed`` on its invoice (once per attempt),
    the invoice still open."""
    external_id = data["external_payment_id"]
    if ExternalId.objects.filter(
        system=event.system, object_type="payment", external_id=external_id
    ).exists():
        return f"payment {external_id} is already recorded"
    invoice = _invoice_by_external_id(event, data["external_invoice_id"])
    if invoice is None:
        raise EventNotReady(f"payment {external_id}: its invoice is not mirrored yet")
    actor = Actor.system(f"connector:{event.system}")
    reason = f"payment failed in {event.system} ({event.event_id})"
    with _data_refusals_reject():
        payment = services.payment_record(
            account=invoice.account,
            amount=Money(_decimal(data["amount"], "amount"), data["currency"]),
            received_at=_timestamp(data, "failed_at"), method=data.get("method") or "",
            invoice=invoice, actor=actor, reason=reason,
        )  # fmt: skip
        services.payment_fail(
            payment=payment, actor=actor, reason=str(data["failure_reason"] or reason)[:500]
        )
        md_services.external_id_link(
            record=payment, system=event.system, object_type="payment", external_id=external_id,
            actor=actor, reason=reason,
        )  # fmt: skip
    return ""


def _payment_refunded(event: InboundEvent, data: dict[str, Any]) -> str:
    """Money given back on a payment: a refund record (once per refund id), the payment
    refunded in part or in full, then posted to the ERP's receivables."""
    external_id = data["external_refund_id"]
    if ExternalId.objects.filter(
        system=event.system, object_type="refund", external_id=external_id
    ).exists():
        return f"refund {external_id} is already recorded"
    payment = None
    # a payment Tandem posted to the ERP's receivables is linked as its customer payment
    for system, object_type in (
        ("billing", "payment"),
        ("payments", "payment"),
        (event.system, "payment"),
        (event.system, "customer_payment"),
    ):
        found = external_id_resolve(
            system=system, object_type=object_type, external_id=data["external_payment_id"]
        )
        if isinstance(found, Payment):
            payment = found
            break
    if payment is None:
        raise EventNotReady(f"refund {external_id}: payment {data['external_payment_id']} "
                            "is not recorded yet")  # fmt: skip
    actor = Actor.system(f"connector:{event.system}")
    reason = f"payment refunded in {event.system} ({event.event_id})"
    with _data_refusals_reject():
        refund = services.payment_refund(
            payment=payment, amount=Money(_decimal(data["amount"], "amount"), data["currency"]),
            refunded_at=_timestamp(data, "refunded_at"),
            refund_reason=str(data.get("reason") or ""), actor=actor, reason=reason,
        )  # fmt: skip
        md_services.external_id_link(
            record=refund, system=event.system, object_type="refund", external_id=external_id,
            actor=actor, reason=reason,
        )  # fmt: skip
    order = payment.invoice.order if payment.invoice is not None else None
    _receivable_post(event, refund.enterprise_id, order, actor)
    return ""


def _credit_note_issued(event: InboundEvent, data: dict[str, Any]) -> str:
    """A credit note billing issued: an issued canonical credit note on its invoice (once per
    credit note id), then posted to the ERP's receivables as a credit memo."""
    external_id = data["external_credit_note_id"]
    if ExternalId.objects.filter(
        system=event.system, object_type="credit_note", external_id=external_id
    ).exists():
        return f"credit note {external_id} is already mirrored"
    invoice = _invoice_by_external_id(event, data["external_invoice_id"])
    if invoice is None:
        raise EventNotReady(f"credit note {external_id}: its invoice is not mirrored yet")
    actor = Actor.system(f"connector:{event.system}")
    reason = f"credit note issued in {event.system} ({event.event_id})"
    with _data_refusals_reject():
        note = services.credit_note_mirror(
            invoice=invoice, amount=Money(_decimal(data["amount"], "amount"), data["currency"]),
            number=data["credit_note_number"], issued_at=_timestamp(data, "issued_at"),
            credit_reason=str(data["reason"] or ""), actor=actor, reason=reason,
        )  # fmt: skip
        md_services.external_id_link(
            record=note, system=event.system, object_type="credit_note",
            external_id=external_id, actor=actor, reason=reason,
        )  # fmt: skip
    _receivable_post(event, note.enterprise_id, invoice.order, actor)
    return ""


def _order_rejected(event: InboundEvent, data: dict[str, Any]) -> str:
    """Finance rejected the sales order in the ERP: the order is rejected, its run (waiting
    for the acceptance) cancelled, and sales ops get an exception with the ERP's reason."""
    order_id = str(data["order_id"]).split(":", 1)[0]
    order = Order.objects.filter(enterprise_id=order_id).first()
    if order is None:
        raise EventNotReady(f"{order_id} is not known yet")
    if order.state == OrderState.REJECTED:
        return f"{order_id} is already rejected"
    if order.state != OrderState.SUBMITTED_TO_ERP:
        raise EventRejected(
            f"{order_id} is {order.state}: a rejection from the ERP applies only to an order "
            "submitted to it and not accepted yet"
        )
    actor = Actor.system(f"connector:{event.system}")
    why = str(data["reason"] or "no reason given")
    reason = f"rejected in the ERP: {why} ({event.event_id})"[:500]
    with _data_refusals_reject():
        services.order_reject(order=order, actor=actor, reason=reason)
    workflow_cancel_for_subject(subject_id=order_id, actor=actor, reason=reason)
    problem_raise(
        Problem(
            category=Category.VALIDATION,
            severity=Severity.HIGH,
            team=Team.SALES_OPS,
            system="erp",
            step="await_financial_acceptance",
            error_class="ErpOrderRejected",
            message=f"{order_id}: finance rejected ERP sales order "
            f"{data['erp_sales_order_id']}: {why[:500]}",
            context={"erp_sales_order_id": data["erp_sales_order_id"], "reason": why[:500]},
            correlation_id=order_id,
        ),
        actor=actor,
        reason=reason,
    )
    return ""


def _usage_reported(event: InboundEvent, data: dict[str, Any]) -> str:
    """One usage record: stored and rated once per (system, usage id); a record that cannot
    be rated (unknown contract, a date outside its term, a product it does not meter)
    rejects the event with the reason."""
    contract_id = data.get("contract_id") or ""
    if not contract_id:
        link = ExternalId.objects.filter(
            system=event.system,
            object_type="subscription",
            external_id=data.get("billing_subscription_id") or "",
        ).first()
        if link is None:
            raise EventRejected(
                f"unknown billing subscription {data.get('billing_subscription_id')!r}"
            )
        contract_id = link.enterprise_id
    try:
        row = usage_row_parse(
            {
                "usage_id": data["usage_id"],
                "contract_id": contract_id,
                "product_code": data["product_code"],
                "quantity": data["quantity"],
                "occurred_at": data["occurred_at"],
                "corrects": data.get("corrects") or "",
            }
        )
    except ValueError as exc:
        raise EventRejected(str(exc)) from exc
    result = usage_records_ingest(
        source_system=event.system,
        rows=[row],
        actor=Actor.system(f"connector:{event.system}"),
        reason=f"usage reported by {event.system} ({event.event_id})",
    )
    if result.errors:
        raise EventRejected(result.errors[0].reason)
    if result.duplicates:
        return f"usage {row.usage_id} was already received"
    event.correlation_id = contract_id
    event.save(update_fields=["correlation_id"])
    return ""


HANDLERS = {
    "quote.approved": _quote_approved,
    "order.accepted": _order_accepted,
    "subscription.activated": _subscription_activated,
    "invoice.posted": _invoice_posted,
    "payment.received": _payment_received,
    "amendment.processed": _amendment_processed,
    "invoice.voided": _invoice_voided,
    "payment.failed": _payment_failed,
    "payment.refunded": _payment_refunded,
    "credit_note.issued": _credit_note_issued,
    "order.rejected": _order_rejected,
    "usage.reported": _usage_reported,
    "renewal.processed": _renewal_processed,
    "cancellation.processed": _cancellation_processed,
}


def event_workflow_trigger(*, event: InboundEvent, canonical_type: str, payload: Any) -> str:
    """Start or advance what ``event`` concerns.

    Returns "" when the event was taken up, or the reason it was absorbed as a duplicate of
    one already handled (the same business event under another event id). Raises
    ``EventRejected`` for an event that cannot be mapped, ``EventNotReady`` for one that
    arrived before what it refers to.
    """
    handler = HANDLERS.get(canonical_type)
    if handler is None:
        logger.info("no handler for %s events yet; recorded only", canonical_type)
        return ""
    return handler(event, payload["data"])
