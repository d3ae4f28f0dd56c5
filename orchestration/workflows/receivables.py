"""Posting to the ERP's receivables what billing invoiced, credited, collected and refunded.

One run per canonical record mirrored from billing (or payments), its enterprise id the
run's subject: an invoice (``INV-…``) becomes an ERP invoice of the customer, a credit note
(``CRN-…``) a credit memo on that ERP invoice, a payment (``PAY-…``) a customer payment
applied to it, a refund (``RFD-…``) a customer refund on that payment. Every ERP record
carries the Tandem id as its reference and is looked up by it before it is created, and the
step's effect is kept under its idempotency key, so a lost ERP answer or a second delivery
never posts twice. A credit memo, payment or refund waits (without using up attempts) until
the record it applies to is in the ERP.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.utils.module_loading import import_string

from masterdata.models import ExternalId
from orchestration.connectors.interfaces import ErpReceivablesApi, RemoteLine, RemoteRecord
from orchestration.connectors.registry import connector_for
from orchestration.workflows.engine import Done, StepContext, StepDef, WorkflowDef
from orchestration.workflows.engine import workflow_register as _register
from orchestration.workflows.errors import StepFailed, StepRetryable
from orchestration.workflows.steps import connector_errors, crosswalk_link, party_of
from q2c.models import CreditNote, Invoice, Payment, Refund

KIND = "receivable_posting"
# The crosswalk's object type for the ERP's copy of each kind of record.
ERP_OBJECT = {
    "INV": "receivable_invoice",
    "CRN": "credit_memo",
    "PAY": "customer_payment",
    "RFD": "customer_refund",
}
TAX_ITEM = "TAX"  # the ERP item a billing invoice's tax is posted on


def receivables_supported() -> bool:
    """Whether the configured ERP connector keeps receivables (``ErpReceivablesApi``).
    Reads the configuration only; makes no call."""
    path = settings.TANDEM_CONNECTOR_IMPLEMENTATIONS.get("erp", "")
    try:
        implementation = import_string(path)
    except ImportError:
        return False
    return callable(getattr(implementation, "credit_memo_create", None))


def _erp() -> ErpReceivablesApi:
    if not receivables_supported():
        raise StepFailed(
            "the configured ERP connector does not keep receivables",
            category="configuration", error_class="ReceivablesUnsupported",
        )  # fmt: skip
    return cast(ErpReceivablesApi, connector_for("erp"))


def _record(ctx: StepContext) -> Invoice | CreditNote | Payment | Refund:
    subject = ctx.run.subject_id
    prefix = subject.split("-", 1)[0]
    model: Any = {"INV": Invoice, "CRN": CreditNote, "PAY": Payment, "RFD": Refund}.get(prefix)
    if model is None:
        raise StepFailed(f"{subject} is not a receivable", category="validation",
                         error_class="NotReceivable")  # fmt: skip
    return cast(Any, model.objects.select_related("account").get(enterprise_id=subject))


def _erp_id(record: Any) -> str:
    """The ERP's id of a record Tandem posted there ('' when not yet)."""
    link = ExternalId.objects.filter(
        system="erp",
        object_type=ERP_OBJECT[record.enterprise_id.split("-", 1)[0]],
        enterprise_id=record.enterprise_id,
    ).first()
    return link.external_id if link is not None else ""


def _waiting_for(record: Any) -> StepRetryable:
    return StepRetryable(
        f"{record.enterprise_id} is not in the ERP's receivables yet", retry_after=10, waiting=True
    )


def erp_customer(ctx: StepContext) -> Done:
    """The customer's ERP record (created by quote to cash; made here when it is missing)."""
    account = _record(ctx).account
    erp = connector_for("erp")
    with connector_errors():
        found = erp.customer_find(reference=account.enterprise_id)
        record = found or erp.customer_create(party=party_of(account), idempotency_key=ctx.key)
    crosswalk_link(account, "erp", "customer", record.id)
    return Done(record.id, {"found": found is not None})


def _post_invoice(
    ctx: StepContext, invoice: Invoice, customer_id: str
) -> tuple[RemoteRecord, bool]:
    lines = [
        RemoteLine(
            product_ref=(line.product.sku if line.product else "") or "BILLING",
            quantity=line.quantity,
            unit_price=line.unit_price,
            description=line.description,
        )
        for line in invoice.lines.select_related("product").order_by("line_no")
    ]
    if invoice.tax_amount:
        lines.append(RemoteLine(product_ref=TAX_ITEM, quantity=Decimal(1),
                                unit_price=invoice.tax_amount, description="Tax"))  # fmt: skip
    erp = connector_for("erp")
    with connector_errors():
        found = erp.invoice_find(reference=invoice.enterprise_id)
        record = found or erp.invoice_create(
            reference=invoice.enterprise_id, customer_id=customer_id, sales_order_id="",
            currency=invoice.currency, lines=lines, idempotency_key=ctx.key,
        )  # fmt: skip
    return record, found is not None


def _post_credit_note(ctx: StepContext, note: CreditNote) -> tuple[RemoteRecord, bool]:
    invoice_id = _erp_id(note.invoice)
    if not invoice_id:
        raise _waiting_for(note.invoice)
    erp = _erp()
    with connector_errors():
        found = erp.credit_memo_find(reference=note.enterprise_id)
        record = found or erp.credit_memo_create(
            reference=note.enterprise_id, invoice_id=invoice_id, currency=note.currency,
            amount=note.amount, memo=note.reason, idempotency_key=ctx.key,
        )  # fmt: skip
    return record, found is not None


def _post_payment(
    ctx: StepContext, payment: Payment, customer_id: str
) -> tuple[RemoteRecord, bool]:
    if payment.invoice is None:
        raise StepFailed(f"{payment.enterprise_id} is not applied to an invoice",
                         category="validation", error_class="PaymentUnapplied")  # fmt: skip
    invoice_id = _erp_id(payment.invoice)
    if not invoice_id:
        raise _waiting_for(payment.invoice)
    erp = _erp()
    with connector_errors():
        found = erp.payment_find(reference=payment.enterprise_id)
        record = found or erp.payment_create(
            reference=payment.enterprise_id, customer_id=customer_id, invoice_id=invoice_id,
            currency=payment.currency, amount=payment.amount,
            received_on=payment.received_at.date(), idempotency_key=ctx.key,
        )  # fmt: skip
    return record, found is not None


def _post_refund(ctx: StepContext, refund: Refund, customer_id: str) -> tuple[RemoteRecord, bool]:
    payment_id = _erp_id(refund.payment)
    if not payment_id:
        raise _waiting_for(refund.payment)
    erp = _erp()
    with connector_errors():
        found = erp.refund_find(reference=refund.enterprise_id)
        record = found or erp.refund_create(
            reference=refund.enterprise_id, customer_id=customer_id, payment_id=payment_id,
            currency=refund.currency, amount=refund.amount, idempotency_key=ctx.key,
        )  # fmt: skip
    return record, found is not None


def post_to_erp(ctx: StepContext) -> Done:
    """The record in the ERP's receivables, once: found by its reference, else created."""
    record = _record(ctx)
    customer_id = str(ctx.result_of("erp_customer")["external_id"])
    if isinstance(record, Invoice):
        posted, found = _post_invoice(ctx, record, customer_id)
    elif isinstance(record, CreditNote):
        posted, found = _post_credit_note(ctx, record)
    elif isinstance(record, Payment):
        posted, found = _post_payment(ctx, record, customer_id)
    elif isinstance(record, Refund):
        posted, found = _post_refund(ctx, record, customer_id)
    else:  # pragma: no cover - _record returns one of the four
        raise TypeError(record)
    crosswalk_link(record, "erp", ERP_OBJECT[record.enterprise_id.split("-", 1)[0]], posted.id)
    return Done(posted.id, {"number": posted.number, "status": posted.status, "found": found})


RECEIVABLE_POSTING = _register(
    WorkflowDef(
        kind=KIND,
        steps=[
            StepDef("erp_customer", erp_customer, system="erp"),
            StepDef("post_to_erp", post_to_erp, system="erp"),
        ],
    )
)
