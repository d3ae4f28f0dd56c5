"""``ErpReceivablesApi`` for Tryton: credit notes, payments and refunds, each carrying Tandem's
reference and found by it before it is created.

- a credit memo (``CRN-…``) is a customer credit note: an ``account.invoice`` of type ``out``
  with one line of quantity -1 (the amount, untaxed: Tandem's credit note is what is due),
  whose reference is Tandem's and whose line's origin is the credited invoice's first line,
  in that invoice's company, journal, receivable account and currency; once posted, its
  receivable line is added to the credited invoice's payment lines, lowering what is due on
  it (Tryton's own "Payment Lines"), when the invoice is still open for that much;
- a payment (``PAY-…``) is what Tryton's Pay wizard records on the invoice: a posted move in
  the cash journal of the company's ``Tandem receipts`` payment method, whose description is
  Tandem's reference and whose origin is the invoice; a payment of all that is due
  reconciles the invoice (its state becomes ``paid``); more than is due is refused;
- a refund (``RFD-…``) is a posted move in the payment's journal giving the money back:
  the receivable debited, the cash account credited, its description Tandem's reference,
  its origin the payment's move; more than the payment brought (less what was refunded on
  it already) is refused.

A create whose answer was lost is found by its reference on the retry; after a create that
got no answer, none is sent until it settled (``TrytonRpc.settled``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import RemoteRecord
from orchestration.connectors.tryton.polling import TrytonPolling
from orchestration.connectors.tryton.records import INVOICE_FIELDS, currency_code, invoice_record
from orchestration.connectors.tryton.session import SYSTEM

PAYMENT_METHOD = "Tandem receipts"  # the saved database's, one per company
MOVE_FIELDS = ["id", "number", "state", "description", "origin", "date", "company", "lines"]
LINE_FIELDS = [
    "id", "account", "party", "debit", "credit", "amount_second_currency",
    "second_currency.code",
]  # fmt: skip


class TrytonReceivables(TrytonPolling):
    """Credit memos, payments and refunds Tandem posts to Tryton's receivables."""

    # --- credit memos ------------------------------------------------------------------------
    def credit_memo_find(self, *, reference: str) -> RemoteRecord | None:
        """The credit note carrying ``reference``; one a lost answer left in draft is posted
        and applied now, as the create would have done."""
        rows = self._credit_notes(reference)
        if rows and rows[0]["state"] in ("draft", "validated"):
            self._credit_note_post(rows[0])
            rows = self._credit_notes(reference)
        return self._credit_memo_record(rows[0]) if rows else None

    def _credit_notes(self, reference: str) -> list[dict[str, Any]]:
        return self.search_read(
            "account.invoice",
            [["reference", "=", reference], ["type", "=", "out"]],
            [*INVOICE_FIELDS, "lines.origin"],
            operation="credit_memo_find",
            limit=1,
            order=[["id", "ASC"]],
        )

    def _credit_memo_record(self, row: dict[str, Any]) -> RemoteRecord:
        record = invoice_record(row)
        credited = ""
        for line in row.get("lines.") or []:
            origin = str(line.get("origin") or "")
            if origin.startswith("account.invoice.line,"):
                credited = str(
                    self.rpc(
                        "invoice_line_read",
                        "model.account.invoice.line.read",
                        [[int(origin.split(",")[1])], ["invoice"]],
                    )[0]["invoice"]
                )
                break
        return RemoteRecord(
            id=record.id,
            status=record.status,
            number=record.number,
            data={**record.data, "amount": money_abs(record.data["total"]), "invoice_id": credited},
        )

    def credit_memo_create(
        self,
        *,
        reference: str,
        invoice_id: str,
        currency: str,
        amount: Decimal,
        memo: str,
        idempotency_key: str,
    ) -> RemoteRecord:
        """A credit note of ``amount`` on customer invoice ``invoice_id``, posted and applied
        to it (``ErpReceivablesApi.credit_memo_create``). ``PermanentError`` for an unknown
        invoice, another currency, or an amount that is not positive or is more than the
        invoice's total."""
        invoice = self._invoice_read(invoice_id, currency)
        if amount <= 0 or amount > Decimal(str(invoice["total_amount"])):
            raise PermanentError(
                f"a credit of {amount} {currency} on invoice {invoice['number']} (total "
                f"{invoice['total_amount']}) is refused: it must be positive and at most the total",
                system=SYSTEM,
                kind="validation",
            )
        self.settled("credit_memo_create", idempotency_key)
        first_line = self.rpc(
            "invoice_line_read",
            "model.account.invoice.line.read",
            [invoice["lines"][:1], ["id", "account"]],
        )[0]
        values = {
            "type": "out",
            "reference": reference,
            "company": invoice["company"],
            "party": invoice["party"],
            "invoice_address": invoice["invoice_address"],
            "account": invoice["account"],
            "journal": invoice["journal"],
            "currency": invoice["currency"],
            "payment_term": invoice["payment_term"],
            "invoice_date": dt.date.today(),
            "description": (memo or f"Credit on {invoice['number']}")[:200],
            "lines": [
                [
                    "create",
                    [
                        {
                            "type": "line",
                            "quantity": -1.0,
                            "unit_price": amount,
                            "account": first_line["account"],
                            "description": memo or f"Credit on {invoice['number']}",
                            "origin": f"account.invoice.line,{first_line['id']}",
                        }
                    ],
                ]
            ],
        }
        with self.in_company(int(invoice["company"])):
            self.rpc(
                "credit_memo_create",
                "model.account.invoice.create",
                [[values]],
                idempotency_key=idempotency_key,
            )
        found = self.credit_memo_find(reference=reference)  # posts and applies the draft
        if found is None:
            raise RetryableError(
                f"credit note {reference} is not searchable yet", system=SYSTEM,
                kind="inconsistent",
            )  # fmt: skip
        return found

    def _credit_note_post(self, row: dict[str, Any]) -> None:
        """Post the credit note and add its receivable line to the credited invoice's payment
        lines while that invoice still has that much to pay."""
        with self.in_company(int(row["company"])):
            self.button("account.invoice", "post", [int(row["id"])], operation="credit_memo_post")
            note = self.rpc(
                "credit_memo_read",
                "model.account.invoice.read",
                [[int(row["id"])], ["lines_to_pay", "total_amount", "lines"]],
            )[0]
            credited = self._credited_invoice(note["lines"])
            if credited is None or not note["lines_to_pay"]:
                return
            invoice = self.rpc(
                "invoice_read",
                "model.account.invoice.read",
                [[credited], ["state", "amount_to_pay"]],
            )[0]
            if invoice["state"] == "posted" and Decimal(str(invoice["amount_to_pay"])) >= abs(
                Decimal(str(note["total_amount"]))
            ):
                self.rpc(
                    "credit_memo_apply",
                    "model.account.invoice.write",
                    [[credited], {"payment_lines": [["add", note["lines_to_pay"]]]}],
                )

    def _credited_invoice(self, line_ids: list[int]) -> int | None:
        for line in self.rpc(
            "invoice_line_read", "model.account.invoice.line.read", [line_ids, ["origin"]]
        ):
            origin = str(line.get("origin") or "")
            if origin.startswith("account.invoice.line,"):
                return int(
                    self.rpc(
                        "invoice_line_read",
                        "model.account.invoice.line.read",
                        [[int(origin.split(",")[1])], ["invoice"]],
                    )[0]["invoice"]
                )
        return None

    def _invoice_read(self, invoice_id: str, currency: str) -> dict[str, Any]:
        rows = self.rpc(
            "invoice_read",
            "model.account.invoice.read",
            [
                [int(invoice_id)],
                ["id", "number", "type", "state", "company", "party", "invoice_address",
                 "account", "journal", "currency", "currency.code", "payment_term", "lines",
                 "total_amount", "amount_to_pay"],
            ],
        )  # fmt: skip
        if not rows or rows[0]["type"] != "out":
            raise PermanentError(
                f"Tryton has no customer invoice {invoice_id}", system=SYSTEM, kind="not_found"
            )
        if currency_code(rows[0]) != currency.upper():
            raise PermanentError(
                f"invoice {rows[0]['number']} is in {currency_code(rows[0])}, not "
                f"{currency.upper()}",
                system=SYSTEM,
                kind="validation",
            )
        return dict(rows[0])

    # --- payments ----------------------------------------------------------------------------
    def payment_find(self, *, reference: str) -> RemoteRecord | None:
        """The payment move carrying ``reference`` (its description), applied to an invoice."""
        return self._move_find(reference, "account.invoice,", "payment_find")

    def payment_create(
        self,
        *,
        reference: str,
        customer_id: str,
        invoice_id: str,
        currency: str,
        amount: Decimal,
        received_on: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        """Pay ``amount`` on invoice ``invoice_id`` through Tryton's Pay wizard, dated
        ``received_on``, with ``reference`` as its description
        (``ErpReceivablesApi.payment_create``). All that is due reconciles the invoice; a
        part leaves the rest due; more than is due, a paid invoice or another currency is a
        ``PermanentError``."""
        invoice = self._invoice_read(invoice_id, currency)
        due = Decimal(str(invoice["amount_to_pay"]))
        if invoice["state"] != "posted" or amount <= 0 or amount > due:
            raise PermanentError(
                f"a payment of {amount} {currency} on invoice {invoice['number']} "
                f"({invoice['state']}, {due} due) is refused: it must be positive and at most "
                "what is due",
                system=SYSTEM,
                kind="validation",
            )
        self.settled("payment_create", idempotency_key)
        company = int(invoice["company"])
        with self.in_company(company):
            method = self.one(
                "account.invoice.payment.method",
                [["name", "=", PAYMENT_METHOD], ["company", "=", company]],
                f"payment method {PAYMENT_METHOD!r}",
            )
            self._pay_wizard(
                invoice_id=int(invoice_id), amount=amount, method=method, date=received_on,
                description=reference, idempotency_key=idempotency_key,
            )  # fmt: skip
        found = self.payment_find(reference=reference)
        if found is None:
            raise RetryableError(
                f"payment {reference} is not searchable yet", system=SYSTEM, kind="inconsistent"
            )
        return found

    def _pay_wizard(
        self, *, invoice_id: int, amount: Decimal, method: int, date: dt.date, description: str,
        idempotency_key: str,
    ) -> None:  # fmt: skip
        """Run ``account.invoice.pay`` as the Tryton client does: start, then OK (and, for a
        part of what is due, the partial payment it asks about)."""
        context = {"active_model": "account.invoice", "active_id": invoice_id,
                   "active_ids": [invoice_id]}  # fmt: skip
        session_id, start, _ = self.rpc("payment_wizard", "wizard.account.invoice.pay.create", [])
        try:
            view = self.rpc(
                "payment_wizard", "wizard.account.invoice.pay.execute", [session_id, {}, start],
                context=context,
            )  # fmt: skip
            form = {**view["view"]["defaults"], "amount": amount, "payment_method": method,
                    "date": date, "description": description}  # fmt: skip
            data = {"start": _plain(form)}
            answer = self.rpc(
                "payment_create", "wizard.account.invoice.pay.execute",
                [session_id, data, "choice"], context=context, idempotency_key=idempotency_key,
            )  # fmt: skip
            asked = (answer or {}).get("view") or {}
            if asked.get("state") == "ask":
                ask = {**asked["defaults"], "type": "partial"}
                self.rpc(
                    "payment_create", "wizard.account.invoice.pay.execute",
                    [session_id, {**data, "ask": _plain(ask)}, "pay"], context=context,
                    idempotency_key=idempotency_key,
                )  # fmt: skip
        finally:
            self.rpc("payment_wizard", "wizard.account.invoice.pay.delete", [session_id])

    # --- refunds -----------------------------------------------------------------------------
    def refund_find(self, *, reference: str) -> RemoteRecord | None:
        """The refund move carrying ``reference`` (its description), on a payment's move."""
        return self._move_find(reference, "account.move,", "refund_find")

    def refund_create(
        self,
        *,
        reference: str,
        customer_id: str,
        payment_id: str,
        currency: str,
        amount: Decimal,
        idempotency_key: str,
    ) -> RemoteRecord:
        """Give ``amount`` back on payment move ``payment_id``: a posted move in its journal
        debiting the receivable and crediting the cash account, in the payment's proportion
        of company currency (``ErpReceivablesApi.refund_create``). More than the payment
        brought less its earlier refunds, or another currency, is a ``PermanentError``."""
        payment = self._payment_read(payment_id)
        if payment["currency"] != currency.upper():
            raise PermanentError(
                f"payment {payment_id} is in {payment['currency']}, not {currency.upper()}",
                system=SYSTEM, kind="validation",
            )  # fmt: skip
        refunded = sum(
            (Decimal(str(row.data["amount"])) for row in self._refunds_of(payment_id)),
            Decimal(0),
        )
        left = payment["amount"] - refunded
        if amount <= 0 or amount > left:
            raise PermanentError(
                f"a refund of {amount} {currency} on payment {payment_id} is refused: "
                f"{left} of it is left to refund",
                system=SYSTEM, kind="validation",
            )  # fmt: skip
        self.settled("refund_create", idempotency_key)
        receivable, cash = payment["receivable"], payment["cash"]
        ratio = amount / payment["amount"]
        company_amount = (Decimal(str(receivable["credit"])) * ratio).quantize(Decimal("0.01"))
        second: dict[str, Any] = {}
        if receivable.get("amount_second_currency") is not None:
            second = {
                "second_currency": self.one(
                    "currency.currency", [["code", "=", currency.upper()]], currency.upper()
                )
            }
        with self.in_company(payment["company"]):
            period = self._period(payment["company"], dt.date.today())
            lines = [
                {"account": receivable["account"], "party": receivable["party"],
                 "debit": company_amount, "credit": Decimal(0),
                 **({**second, "amount_second_currency": amount} if second else {})},
                {"account": cash["account"], "debit": Decimal(0), "credit": company_amount,
                 **({**second, "amount_second_currency": -amount} if second else {})},
            ]  # fmt: skip
            created = self.rpc(
                "refund_create",
                "model.account.move.create",
                [[{"company": payment["company"], "journal": payment["journal"],
                   "period": period, "date": dt.date.today(), "description": reference,
                   "origin": f"account.move,{payment_id}",
                   "lines": [["create", lines]]}]],
                idempotency_key=idempotency_key,
            )  # fmt: skip
            self.button("account.move", "post", [int(created[0])], operation="refund_post")
        found = self.refund_find(reference=reference)
        if found is None:
            raise RetryableError(
                f"refund {reference} is not searchable yet", system=SYSTEM, kind="inconsistent"
            )
        return found

    def _payment_read(self, payment_id: str) -> dict[str, Any]:
        """A payment move with its receivable (credited) and cash (debited) lines, its
        company, journal, currency and amount in that currency."""
        moves = self.rpc(
            "payment_read", "model.account.move.read",
            [[int(payment_id)], [*MOVE_FIELDS, "journal"]],
        )  # fmt: skip
        if not moves or not str(moves[0].get("origin") or "").startswith("account.invoice,"):
            raise PermanentError(
                f"Tryton has no customer payment {payment_id}", system=SYSTEM, kind="not_found"
            )
        move = moves[0]
        lines = self.rpc(
            "payment_lines_read", "model.account.move.line.read", [move["lines"], LINE_FIELDS]
        )
        receivable = next(line for line in lines if line["party"] and line["credit"])
        cash = next(line for line in lines if line["debit"])
        invoice_id = str(move["origin"]).split(",")[1]
        invoice = self.rpc(
            "invoice_read", "model.account.invoice.read", [[int(invoice_id)], ["currency.code"]]
        )[0]
        if receivable.get("amount_second_currency") is not None:
            amount = abs(Decimal(str(receivable["amount_second_currency"])))
        else:
            amount = Decimal(str(receivable["credit"]))
        return {
            "company": int(move["company"]), "journal": move["journal"],
            "currency": currency_code(invoice), "amount": amount,
            "receivable": receivable, "cash": cash,
        }  # fmt: skip

    def _refunds_of(self, payment_id: str) -> list[RemoteRecord]:
        rows = self.search_read(
            "account.move",
            [["origin", "=", f"account.move,{payment_id}"], ["state", "=", "posted"]],
            MOVE_FIELDS, operation="refunds_read",
        )  # fmt: skip
        return [self._move_record(row) for row in rows]

    def _period(self, company: int, on: dt.date) -> int:
        return self.one(
            "account.period",
            [["company", "=", company], ["start_date", "<=", on], ["end_date", ">=", on],
             ["type", "=", "standard"]],
            f"open accounting period on {on}",
        )  # fmt: skip

    # --- moves -------------------------------------------------------------------------------
    def _move_find(self, reference: str, origin: str, operation: str) -> RemoteRecord | None:
        rows = self.search_read(
            "account.move",
            [["description", "=", reference], ["origin", "like", f"{origin}%"]],
            MOVE_FIELDS, operation=operation, limit=1, order=[["id", "ASC"]],
        )  # fmt: skip
        if not rows:
            return None
        if rows[0]["state"] == "draft":  # a create whose answer was lost before the posting
            with self.in_company(int(rows[0]["company"])):
                self.button("account.move", "post", [int(rows[0]["id"])], operation="move_post")
            return self._move_find(reference, origin, operation)
        return self._move_record(rows[0])

    def _move_record(self, row: dict[str, Any]) -> RemoteRecord:
        """A payment or refund move: its amount in the document's currency (the receivable
        line's second currency amount, else its company amount)."""
        lines = self.rpc(
            "move_lines_read", "model.account.move.line.read", [row["lines"], LINE_FIELDS]
        )
        receivable = next((line for line in lines if line["party"]), lines[0])
        if receivable.get("amount_second_currency") is not None:
            amount = abs(Decimal(str(receivable["amount_second_currency"])))
        else:
            amount = Decimal(str(receivable["debit"] or receivable["credit"]))
        origin_model, _, origin_id = str(row.get("origin") or "").partition(",")
        return RemoteRecord(
            id=str(row["id"]),
            status=str(row["state"]),
            number=str(row.get("number") or ""),
            data={
                "external_id": row.get("description") or "",
                "amount": format(amount, "f"),
                "date": str(row.get("date") or ""),
                "company_id": str(row.get("company") or ""),
                "invoice_id": origin_id if origin_model == "account.invoice" else "",
                "payment_id": origin_id if origin_model == "account.move" else "",
            },
        )


def money_abs(value: object) -> str:
    """An amount string without its sign (a credit note's total is negative in Tryton)."""
    return format(abs(Decimal(str(value))), "f")


def _plain(form: dict[str, Any]) -> dict[str, Any]:
    """A wizard form's values without the ``<field>.`` read-through keys Tryton adds."""
    return {key: value for key, value in form.items() if not key.endswith(".")}
