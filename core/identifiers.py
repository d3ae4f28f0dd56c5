"""Enterprise identifiers (ACC-000001, ORD-000001, …) allocated without races.

One counter row per prefix, advanced with a single ``UPDATE … RETURNING``: the row lock (or
SQLite's write lock) serialises allocators, and a rolled-back transaction gives its number
back, so identifiers are unique and gap-free. Never ``max()+1``.
"""

from __future__ import annotations

from django.db import connection, transaction

from core.models import IdentifierCounter

PREFIXES = {
    "account": "ACC",
    "legal_entity": "LE",
    "product": "PRD",
    "quote": "QTE",
    "order": "ORD",
    "contract": "CTR",
    "invoice": "INV",
    "credit_note": "CRN",
    "payment": "PAY",
    "refund": "RFD",
    "usage": "USG",
}
WIDTH = 6


def format_identifier(prefix: str, number: int) -> str:
    """An enterprise id as people read it: ``ORD-000042``."""
    return f"{prefix}-{number:0{WIDTH}d}"


def identifier_allocate(*, prefix: str) -> str:
    """Return the next identifier for ``prefix``; call inside the creating transaction."""
    table = IdentifierCounter._meta.db_table
    with transaction.atomic():
        IdentifierCounter.objects.get_or_create(prefix=prefix)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET last_value = last_value + 1 "  # noqa: S608 (table name is ours)
                "WHERE prefix = %s RETURNING last_value",
                [prefix],
            )
            (number,) = cursor.fetchone()
    return format_identifier(prefix, number)
