"""Tryton rows as ``RemoteRecord``: the fields read from sales and invoices, and their values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orchestration.connectors.interfaces import RemoteRecord

SALE_FIELDS = [
    "id",
    "company",
    "origin",
    "number",
    "reference",
    "state",
    "party",
    "total_amount",
    "untaxed_amount",
    "tax_amount",
    "currency.code",
    "invoice_state",
]
INVOICE_FIELDS = [
    "id",
    "company",
    "number",
    "reference",
    "state",
    "party",
    "total_amount",
    "untaxed_amount",
    "tax_amount",
    "currency.code",
    "invoice_date",
    "lines",
]


def money(value: Any) -> str:
    """A Tryton amount (Decimal, number or None) as a plain decimal string; None is ``0``."""
    return format(Decimal(str(value if value is not None else 0)), "f")


def currency_code(row: dict[str, Any]) -> str:
    """The row's currency code (read as ``currency.code``), upper case."""
    return str((row.get("currency.") or {}).get("code") or "").upper()


def party_record(row: dict[str, Any], reference: str) -> RemoteRecord:
    """A ``party.party`` row as a ``RemoteRecord``; its code is the number."""
    return RemoteRecord(
        id=str(row["id"]),
        status="active" if row.get("active", True) else "inactive",
        number=str(row.get("code") or ""),
        data={"external_id": reference, "name": row.get("name") or ""},
    )


def _document_record(row: dict[str, Any], **extra: str) -> RemoteRecord:
    """A sale or an invoice: both carry a reference, a party, a currency and totals."""
    return RemoteRecord(
        id=str(row["id"]),
        status=str(row["state"]),
        number=str(row.get("number") or ""),
        data={
            "external_id": row.get("reference") or "",
            "customer_id": str(row.get("party") or ""),
            "currency": currency_code(row),
            "total": money(row.get("total_amount")),
            "tax_total": money(row.get("tax_amount")),
            "company_id": str(row.get("company") or ""),
            **extra,
        },
    )


def sale_record(row: dict[str, Any]) -> RemoteRecord:
    """A ``sale.sale`` row as a ``RemoteRecord``, with its invoice state and origin (a
    return's original sale, ``sale.sale,<id>``)."""
    return _document_record(
        row, invoice_state=row.get("invoice_state") or "", origin=str(row.get("origin") or "")
    )


def invoice_record(row: dict[str, Any]) -> RemoteRecord:
    """An ``account.invoice`` row as a ``RemoteRecord``, with its untaxed total."""
    return _document_record(row, untaxed_total=money(row.get("untaxed_amount")))
