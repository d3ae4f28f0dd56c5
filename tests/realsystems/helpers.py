"""What the tests do in Tryton in place of its users (finance recording a payment)."""

from __future__ import annotations

import datetime as dt

from orchestration.connectors.tryton.erp import TrytonErp


def tryton_pay_in_full(erp: TrytonErp, invoice_id: int) -> None:
    """Record the customer's payment of an invoice in Tryton, as finance does (the Pay
    wizard), into a cash payment method the test database gets on first use."""
    methods = erp.search_read("account.invoice.payment.method", [["name", "=", "Test cash"]],
                              ["id"], operation="test_read")  # fmt: skip
    if methods:
        method_id = methods[0]["id"]
    else:
        journal = erp.search_read("account.journal", [["type", "=", "cash"]], ["id"],
                                  operation="test_read", limit=1)[0]["id"]  # fmt: skip
        cash = erp.search_read("account.account", [["code", "=", "1.1.1"]], ["id"],
                               operation="test_read", limit=1)[0]["id"]  # fmt: skip
        method_id = erp.rpc("test_create", "model.account.invoice.payment.method.create", [[{
            "name": "Test cash", "company": erp.session().context["company"],
            "journal": journal, "credit_account": cash, "debit_account": cash,
        }]])[0]  # fmt: skip
    context = {"active_model": "account.invoice", "active_id": invoice_id,
               "active_ids": [invoice_id]}  # fmt: skip
    session_id, start, _ = erp.rpc("test_pay", "wizard.account.invoice.pay.create", [])
    view = erp.rpc("test_pay", "wizard.account.invoice.pay.execute", [session_id, {}, start],
                   context=context)  # fmt: skip
    form = {**view["view"]["defaults"], "payment_method": method_id, "date": dt.date.today(),
            "description": "paid by transfer"}  # fmt: skip
    form = {key: value for key, value in form.items() if not key.endswith(".")}
    erp.rpc("test_pay", "wizard.account.invoice.pay.execute",
            [session_id, {"start": form}, "choice"], context=context)  # fmt: skip
    erp.rpc("test_pay", "wizard.account.invoice.pay.delete", [session_id])
