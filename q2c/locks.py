"""Row locks, always taken in primary-key order so two workers never deadlock."""

from __future__ import annotations

from q2c.models import Contract, Invoice, Payment, Quote


def lock_contract(contract_id: int) -> Contract:
    return Contract.objects.select_for_update().get(pk=contract_id)


def lock_invoice(invoice_id: int) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice_id)


def lock_quote(quote_id: int) -> Quote:
    return Quote.objects.select_for_update().get(pk=quote_id)


def lock_payment(payment_id: int) -> Payment:
    return Payment.objects.select_for_update().get(pk=payment_id)
