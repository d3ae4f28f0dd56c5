"""Reading Tryton's changes as canonical events (``orchestration.events.polling`` drives it).

Tryton sends no webhooks. Each stream (accepted sales, posted invoices, paid invoices, credit
notes, refunds) is read in pages of rows written after a cursor, ``<write_date>|<id>``,
oldest first, with the same look-back window; event ids are derived from the record, so a
change read twice is absorbed as a duplicate. Sales and invoices become events when Tandem
made them (their reference is an order's enterprise id, or a contract version's
``CTR-…:v<n>`` for a renewal); a return (a sale with a negative total) is no acceptance.
Credit notes and refunds become events when they apply to what Tandem knows (a credit note
crediting an invoice, a refund on a payment move) and Tandem did not post them itself (those
carry its ``CRN-``/``RFD-`` reference and are Tandem's already); receivables Tandem posted
(``INV-…``, ``CRN-…``) are not read back as invoices or payments of an order.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from django.conf import settings

from orchestration.connectors.errors import PermanentError
from orchestration.connectors.interfaces import PollBatch
from orchestration.connectors.tryton.records import (
    INVOICE_FIELDS,
    SALE_FIELDS,
    currency_code,
    money,
)
from orchestration.connectors.tryton.session import SYSTEM, TrytonRpc

ACCEPTED_STATES = ("confirmed", "processing", "done")
POSTED_STATES = ("posted", "paid")
POLL_PAGE = 100
RECHECK_PAGES = 10  # the look-back re-reads at most this many pages per stream and poll
ENTERPRISE_ID = re.compile(r"^[A-Z]{2,4}-\d{6,}$")
SALE_REFERENCE = re.compile(r"^[A-Z]{2,4}-\d{6,}(:v\d+)?$")  # an order, or a contract version
POSTED_BY_TANDEM = ("INV-", "CRN-", "PAY-", "RFD-")  # receivables Tandem posts to Tryton


class TrytonPolling(TrytonRpc):
    """The ``Pollable`` and ``Rechecking`` side of the Tryton connector."""

    def poll_streams(self) -> list[str]:
        """``sales`` (accepted), ``invoices`` (posted), ``payments`` (paid invoices),
        ``credit_notes`` (posted) and ``refunds`` (posted)."""
        return ["sales", "invoices", "payments", "credit_notes", "refunds"]

    def poll(self, *, stream: str, cursor: str) -> PollBatch:
        """Changes after ``cursor`` in ``stream`` as canonical events, oldest first."""
        return self._reader(stream)(cursor, None)

    def poll_recheck(self, *, stream: str, cursor: str) -> list[dict[str, Any]]:
        """The changes of the ``settings.TRYTON_POLL_LOOKBACK_SECONDS`` before the cursor.

        Tryton stamps ``write_date`` when the transaction writes (with PostgreSQL, when it
        began), and the write becomes visible when it commits: a long transaction can
        commit after the cursor moved past its stamp. Re-reading this window (at most
        ``RECHECK_PAGES`` pages) finds it; ``orchestration.events.polling`` absorbs the rest."""
        after, _ = cursor_parse(cursor)
        lookback = float(settings.TRYTON_POLL_LOOKBACK_SECONDS)
        if after is None or lookback <= 0:
            return []
        reader = self._reader(stream)
        position = cursor_format(after - dt.timedelta(seconds=lookback), 0)
        events: list[dict[str, Any]] = []
        for _page in range(RECHECK_PAGES):
            batch = reader(position, after)
            events.extend(batch.events)
            if batch.cursor == position:
                break
            position = batch.cursor
        return events

    def _reader(self, stream: str) -> Any:
        reader = {
            "sales": self._poll_sales,
            "invoices": self._poll_invoices,
            "payments": self._poll_payments,
            "credit_notes": self._poll_credit_notes,
            "refunds": self._poll_refunds,
        }.get(stream)
        if reader is None:
            raise PermanentError(
                f"Tryton has no poll stream {stream!r}", system=SYSTEM, kind="not_found"
            )
        return reader

    def _changed_since(
        self,
        model: str,
        cursor: str,
        domain: list[Any],
        fields: list[str],
        operation: str,
        until: dt.datetime | None,
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of rows written after ``cursor`` (and not after ``until``), oldest first."""
        after, after_id = cursor_parse(cursor)
        window: list[Any] = []
        if after is not None:
            window = [
                [
                    "OR",
                    [["write_date", ">", after]],
                    [["write_date", "=", after], ["id", ">", after_id]],
                ]
            ]
        if until is not None:
            window.append(["write_date", "<=", until])
        rows = self.search_read(
            model,
            [["write_date", "!=", None], *domain, *window],
            [*fields, "write_date"],
            operation=operation,
            limit=POLL_PAGE,
            order=[["write_date", "ASC"], ["id", "ASC"]],
        )
        next_cursor = cursor_format(rows[-1]["write_date"], rows[-1]["id"]) if rows else cursor
        return rows, next_cursor

    def _poll_sales(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        rows, next_cursor = self._changed_since(
            "sale.sale",
            cursor,
            [["state", "in", list(ACCEPTED_STATES)]],
            SALE_FIELDS,
            "poll_sales",
            until,
        )
        events = []
        for row in rows:
            reference = str(row.get("reference") or "")
            if not SALE_REFERENCE.match(reference):
                continue  # not a sale Tandem made
            if Decimal(str(row.get("total_amount") or 0)) < 0 or row.get("origin"):
                continue  # a return: nothing waits for its acceptance
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-sale-{row['id']}-accepted",
                    "event_type": "order.accepted",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "correlation_id": reference,
                    "data": {
                        "order_id": reference,
                        "erp_sales_order_id": str(row["id"]),
                        "accepted_at": stamp,
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)

    def _poll_invoices(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        rows, next_cursor = self._changed_since(
            "account.invoice",
            cursor,
            [["type", "=", "out"], ["state", "in", list(POSTED_STATES)], ["total_amount", ">=", 0]],
            INVOICE_FIELDS,
            "poll_invoices",
            until,
        )
        line_ids = [line_id for row in rows for line_id in row.get("lines") or []]
        lines_by_id: dict[int, dict[str, Any]] = {}
        if line_ids:
            for line in self.rpc(
                "invoice_lines_read",
                "model.account.invoice.line.read",
                [
                    line_ids,
                    ["id", "description", "quantity", "unit_price", "amount", "product.code"],
                ],
            ):
                lines_by_id[int(line["id"])] = line
        events = []
        for row in rows:
            order_id = _order_reference(str(row.get("reference") or ""))
            lines = [lines_by_id[i] for i in row.get("lines") or [] if i in lines_by_id]
            if order_id is None or not lines:
                continue  # not an invoice Tandem asked for
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-invoice-{row['id']}-posted",
                    "event_type": "invoice.posted",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "correlation_id": order_id,
                    "data": {
                        "external_invoice_id": str(row["id"]),
                        "invoice_number": str(row.get("number") or row["id"]),
                        "order_id": order_id,
                        "currency": currency_code(row),
                        "total_amount": money(row.get("total_amount")),
                        "tax_amount": money(row.get("tax_amount")),
                        "issue_date": (row.get("invoice_date") or dt.date.today()).isoformat(),
                        "lines": [
                            {
                                "description": str(line.get("description") or "line"),
                                "product_code": str((line.get("product.") or {}).get("code") or ""),
                                "quantity": money(Decimal(str(line.get("quantity") or 0))),
                                "unit_price": money(line.get("unit_price")),
                                "amount": money(line.get("amount")),
                            }
                            for line in lines
                        ],
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)

    def _poll_payments(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        """Customer invoices paid in full in Tryton, as ``payment.received`` of their total."""
        rows, next_cursor = self._changed_since(
            "account.invoice",
            cursor,
            [["type", "=", "out"], ["state", "=", "paid"]],
            INVOICE_FIELDS,
            "poll_payments",
            until,
        )
        events = []
        for row in rows:
            order_id = _order_reference(str(row.get("reference") or ""))
            if order_id is None:
                continue  # not an invoice Tandem asked for
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-invoice-{row['id']}-paid",
                    "event_type": "payment.received",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "correlation_id": order_id,
                    "data": {
                        "external_payment_id": f"invoice-{row['id']}-paid",
                        "external_invoice_id": str(row["id"]),
                        "invoice_number": str(row.get("number") or row["id"]),
                        "amount": money(row.get("total_amount")),
                        "currency": currency_code(row),
                        "received_at": stamp,
                        "method": "other",
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)

    def _poll_credit_notes(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        """Posted credit notes (customer invoices with a negative total) on an invoice,
        made in Tryton (finance's Credit wizard, a return's invoicing), as
        ``credit_note.issued`` of their amount on the credited invoice."""
        rows, next_cursor = self._changed_since(
            "account.invoice",
            cursor,
            [["type", "=", "out"], ["state", "in", list(POSTED_STATES)],
             ["total_amount", "<", 0]],
            [*INVOICE_FIELDS, "description", "lines.origin"],
            "poll_credit_notes",
            until,
        )  # fmt: skip
        credited = self._credited_invoices(rows)
        events = []
        for row in rows:
            if str(row.get("reference") or "").startswith(POSTED_BY_TANDEM):
                continue  # Tandem's own credit memo
            invoice_id = credited.get(int(row["id"]))
            if invoice_id is None:
                continue  # credits no invoice
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-credit-note-{row['id']}-posted",
                    "event_type": "credit_note.issued",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "data": {
                        "external_credit_note_id": str(row["id"]),
                        "credit_note_number": str(row.get("number") or row["id"]),
                        "external_invoice_id": str(invoice_id),
                        "amount": money(abs(Decimal(str(row.get("total_amount") or 0)))),
                        "currency": currency_code(row),
                        "issued_at": stamp,
                        "reason": str(row.get("description") or ""),
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)

    def _credited_invoices(self, rows: list[dict[str, Any]]) -> dict[int, int]:
        """Credit note id -> the invoice its lines credit (their origin's invoice)."""
        origin_of: dict[int, int] = {}
        for row in rows:
            for line in row.get("lines.") or []:
                origin = str(line.get("origin") or "")
                if origin.startswith("account.invoice.line,"):
                    origin_of[int(row["id"])] = int(origin.split(",")[1])
                    break
        if not origin_of:
            return {}
        invoice_of = {
            int(line["id"]): int(line["invoice"])
            for line in self.rpc(
                "invoice_lines_read",
                "model.account.invoice.line.read",
                [sorted(set(origin_of.values())), ["id", "invoice"]],
            )
        }
        return {note: invoice_of[line] for note, line in origin_of.items() if line in invoice_of}

    def _poll_refunds(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        """Posted moves giving money back on a payment move (their origin), made in Tryton,
        as ``payment.refunded`` of the receivable line's amount."""
        rows, next_cursor = self._changed_since(
            "account.move",
            cursor,
            [["state", "=", "posted"], ["origin", "like", "account.move,%"]],
            ["id", "number", "description", "origin", "date", "lines"],
            "poll_refunds",
            until,
        )
        rows = [r for r in rows if not str(r.get("description") or "").startswith(POSTED_BY_TANDEM)]
        line_ids = [line_id for row in rows for line_id in row.get("lines") or []]
        lines: dict[int, dict[str, Any]] = {}
        if line_ids:
            for line in self.rpc(
                "move_lines_read",
                "model.account.move.line.read",
                [line_ids, ["id", "party", "debit", "amount_second_currency",
                            "second_currency.code", "move.company.currency.code"]],
            ):  # fmt: skip
                lines[int(line["id"])] = line
        events = []
        for row in rows:
            receivable = next(
                (lines[i] for i in row.get("lines") or [] if i in lines and lines[i]["party"]),
                None,
            )
            if receivable is None or not receivable["debit"]:
                continue  # not money given back to a customer
            second = receivable.get("amount_second_currency")
            currency = str((receivable.get("second_currency.") or {}).get("code") or "")
            if second is None:
                company = (receivable.get("move.") or {}).get("company.") or {}
                currency = str((company.get("currency.") or {}).get("code") or "")
            amount = abs(Decimal(str(second if second is not None else receivable["debit"])))
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-refund-{row['id']}-posted",
                    "event_type": "payment.refunded",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "data": {
                        "external_refund_id": str(row["id"]),
                        "external_payment_id": str(row["origin"]).split(",")[1],
                        "amount": money(amount),
                        "currency": currency.upper(),
                        "refunded_at": stamp,
                        "reason": str(row.get("description") or ""),
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)


def cursor_format(write_date: dt.datetime, record_id: int) -> str:
    """The cursor after a row: its write date (naive UTC) and id, ``<iso>|<id>``."""
    return f"{write_date.astimezone(dt.UTC).replace(tzinfo=None).isoformat()}|{record_id}"


def cursor_parse(cursor: str) -> tuple[dt.datetime | None, int]:
    """(write date, id) from a cursor; an empty cursor starts from the beginning."""
    if not cursor:
        return None, 0
    stamp, _, record_id = cursor.partition("|")
    return dt.datetime.fromisoformat(stamp), int(record_id or 0)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _order_reference(reference: str) -> str | None:
    """The order's enterprise id from an invoice reference (``ORD-…`` or ``ORD-…-OT``); None
    for what Tandem posted to the receivables (it has those already)."""
    base = reference.removesuffix("-OT")
    if reference.startswith(POSTED_BY_TANDEM):
        return None
    return base if ENTERPRISE_ID.match(base) else None
