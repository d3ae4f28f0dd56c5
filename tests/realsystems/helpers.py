"""What the tests do in Tryton in place of its users (finance recording a payment)."""

from __future__ import annotations

import datetime as dt

from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.connectors.tryton.receivables import PAYMENT_METHOD


def tryton_pay_in_full(erp: TrytonErp, invoice_id: int) -> None:
    """Record the customer's payment of an invoice in Tryton, as finance does (the Pay
    wizard), into the invoice's company's receipts payment method (the saved database's)."""
    company = erp.rpc("test_read", "model.account.invoice.read", [[invoice_id], ["company"]])[0][
        "company"
    ]
    with erp.in_company(company):
        method_id = erp.search_read(
            "account.invoice.payment.method",
            [["name", "=", PAYMENT_METHOD], ["company", "=", company]],
            ["id"], operation="test_read",
        )[0]["id"]  # fmt: skip
        context = {"active_model": "account.invoice", "active_id": invoice_id,
                   "active_ids": [invoice_id]}  # fmt: skip
        session_id, start, _ = erp.rpc("test_pay", "wizard.account.invoice.pay.create", [])
        view = erp.rpc("test_pay", "wizard.account.invoice.pay.execute",
                       [session_id, {}, start], context=context)  # fmt: skip
        form = {**view["view"]["defaults"], "payment_method": method_id,
                "date": dt.date.today(), "description": "paid by transfer"}  # fmt: skip
        form = {key: value for key, value in form.items() if not key.endswith(".")}
        erp.rpc("test_pay", "wizard.account.invoice.pay.execute",
                [session_id, {"start": form}, "choice"], context=context)  # fmt: skip
        erp.rpc("test_pay", "wizard.account.invoice.pay.delete", [session_id])
