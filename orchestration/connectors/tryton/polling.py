"""Reading Tryton's changes as canonical events (``orchestration.events.polling`` drives it).

Tryton sends no webhooks. Each stream (accepted sales, posted invoices, paid invoices) is
read in pages of rows written after a cursor, ``<write_date>|<id>``, oldest first; only
records Tandem made (their reference is an enterprise id) become events, with event ids
derived from the record, so a change read twice is absorbed as a duplicate.
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


class TrytonPolling(TrytonRpc):
    """The ``Pollable`` and ``Rechecking`` side of the Tryton connector."""

    def poll_streams(self) -> list[str]:
        """``sales`` (accepted), ``invoices`` (posted) and ``payments`` (paid invoices)."""
        return ["sales", "invoices", "payments"]

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
            if not ENTERPRISE_ID.match(reference):
                continue  # not a sale Tandem made
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
            [["type", "=", "out"], ["state", "in", list(POSTED_STATES)]],
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
    """The order's enterprise id from an invoice reference (``ORD-…`` or ``ORD-…-OT``)."""
    base = reference.removesuffix("-OT")
    return base if ENTERPRISE_ID.match(base) else None
