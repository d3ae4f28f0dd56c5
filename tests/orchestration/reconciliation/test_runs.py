"""Reconciliation runs against the live sandbox on loopback: each drift type made in the
system behind Tandem's back, found, persisting into an exception, closing by itself."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.audit import Actor
from exceptions.models import OperationalException
from masterdata.services.records import external_id_link
from orchestration.reconciliation.models import DriftItem, ReconciliationRun, RunState
from orchestration.reconciliation.services import reconciliation_run
from q2c import services as q2c
from tests import factories
from tests.sandbox.helpers import SandboxClient, billing_customer, billing_price

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]


def _link(record: Any, system: str, object_type: str, external_id: str) -> None:
    external_id_link(
        record=record, system=system, object_type=object_type, external_id=external_id,
        actor=factories.actor(), reason="test setup",
    )  # fmt: skip


def _deal(sandbox: SandboxClient) -> dict[str, Any]:
    """An order with its contract (10 x 25.00 GBP a month) subscribed in billing, and the
    subscription's first invoice mirrored in Tandem: everything agrees."""
    order = factories.order()
    contract = factories.contract(account=order.account, order=order)
    q2c.contract_activate(contract=contract, actor=factories.actor(), reason="test setup")
    customer = billing_customer(sandbox)
    price = billing_price(sandbox, unit_amount=2500)
    response = sandbox.post(
        "billing", "/subscriptions",
        {"customer": customer["id"], "items": [{"price": price["id"], "quantity": 10}],
         "metadata": {"tandem_order": order.enterprise_id,
                      "tandem_contract": contract.enterprise_id}},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    subscription = response.json()
    invoice = factories.invoice(
        account=order.account, order=order, contract=contract,
        lines=[q2c.InvoiceLineInput(description="seats", quantity=Decimal(10),
                                    unit_price=Decimal("25.00"))],
    )  # fmt: skip
    q2c.invoice_post(invoice=invoice, actor=factories.actor(), reason="test setup")
    _link(invoice, "billing", "invoice", subscription["latest_invoice"])
    _link(contract, "billing", "subscription", subscription["id"])
    return {
        "order": order, "contract": contract, "invoice": invoice, "customer": customer,
        "price": price, "subscription": subscription,
    }  # fmt: skip


def _run(system: str = "billing", since: dt.datetime | None = None) -> ReconciliationRun:
    return reconciliation_run(system=system, actor=Actor.system("scheduler"), since=since)


def _open() -> list[tuple[str, str, str]]:
    return sorted(
        (item.object_type, item.drift_type, item.tandem_ref or item.remote_ref)
        for item in DriftItem.objects.filter(state="open")
    )


def test_a_system_that_agrees_with_tandem_leaves_no_drift(sandbox):
    # given
    _deal(sandbox)
    # when
    run = _run()
    # then
    assert (run.state, run.found, run.tandem_rows, run.remote_rows) == (RunState.SUCCEEDED, 0, 2, 2)
    assert _open() == []


def test_an_invoice_voided_in_billing_is_status_drift_that_persists_then_clears(sandbox):
    # given
    deal = _deal(sandbox)
    invoice = deal["invoice"]
    voided = sandbox.post("billing", f"/invoices/{deal['subscription']['latest_invoice']}/void")
    assert voided.status_code == 200
    # when
    first = _run()
    second = _run()
    # then: found twice, one item, an exception for finance once it persisted
    assert _open() == [("invoice", "status", invoice.enterprise_id)]
    item = DriftItem.objects.get(state="open")
    assert (item.seen_count, item.first_run, item.last_run) == (2, first, second)
    assert item.detail == "posted in Tandem, void in billing"
    exc = OperationalException.objects.get()
    assert item.exception_ref == f"EXC-{exc.pk}"
    assert (exc.owner_team, exc.system, exc.correlation_id) == (
        "finance_ops", "billing", invoice.enterprise_id,
    )  # fmt: skip
    # when Tandem voids it too, the next run closes the item by itself
    q2c.invoice_void(invoice=invoice, actor=factories.actor(), reason="voided in billing")
    third = _run()
    # then
    item.refresh_from_db()
    assert (item.state, third.closed) == ("cleared", 1)
    last = item.history.order_by("-history_id").first()
    assert last is not None
    assert (last.state, last.history_change_reason, last.history_user.username) == (
        "cleared", f"no longer found by REC-{third.pk}", "scheduler",
    )  # fmt: skip
    exc.refresh_from_db()
    assert (exc.state, exc.resolution_code) == ("resolved", "gone")


def test_resolving_a_drift_item_resolves_the_exception_it_raised(sandbox, make_user):
    # given a drift found twice: an exception for finance
    deal = _deal(sandbox)
    sandbox.post("billing", f"/invoices/{deal['subscription']['latest_invoice']}/void")
    _run()
    _run()
    item = DriftItem.objects.get(state="open")
    exc = OperationalException.objects.get()
    finance = Actor.person(make_user("fin", "finance_ops"))
    # when
    from orchestration.reconciliation.services import drift_resolve

    drift_resolve(item=item, code="fixed_downstream", actor=finance, reason="re-issued")
    # then
    exc.refresh_from_db()
    assert (exc.state, exc.resolution_code, exc.resolution_note) == (
        "resolved", "gone", f"DRIFT-{item.pk}: re-issued",
    )  # fmt: skip


def test_a_subscription_cancelled_in_billing_is_status_drift(sandbox):
    # given
    deal = _deal(sandbox)
    sandbox.call("DELETE", "billing", f"/subscriptions/{deal['subscription']['id']}")
    # when
    _run()
    # then
    assert _open() == [("subscription", "status", deal["contract"].enterprise_id)]
    assert DriftItem.objects.get().detail == "active in Tandem, canceled in billing"


def test_a_subscription_changed_in_billing_is_version_drift(sandbox):
    # given
    deal = _deal(sandbox)
    [item] = deal["subscription"]["items"]["data"]
    response = sandbox.post(
        "billing", f"/subscriptions/{deal['subscription']['id']}",
        {"items": [{"id": item["id"], "quantity": 12}]},
    )  # fmt: skip
    assert response.status_code == 200
    # when
    _run()
    # then
    drift = DriftItem.objects.get()
    assert (drift.drift_type, drift.tandem_amount, drift.remote_amount, drift.difference) == (
        "version", Decimal("250.0000"), Decimal("300.0000"), Decimal("50.0000"),
    )  # fmt: skip


def _billing_invoice(sandbox: SandboxClient, customer: str, order_id: str, amount: int) -> str:
    created = sandbox.post(
        "billing", "/invoices",
        {"customer": customer, "currency": "gbp", "metadata": {"tandem_order": order_id},
         "lines": [{"amount": amount, "description": "seats"}]},
    ).json()  # fmt: skip
    assert sandbox.post("billing", f"/invoices/{created['id']}/finalize").status_code == 200
    return str(created["id"])


def test_a_second_invoice_for_the_same_order_and_amount_is_a_duplicate(sandbox):
    # given
    deal = _deal(sandbox)
    duplicate = _billing_invoice(
        sandbox, deal["customer"]["id"], deal["order"].enterprise_id, 25000
    )
    # when
    _run()
    # then
    item = DriftItem.objects.get()
    assert (item.drift_type, item.tandem_ref, item.remote_ref) == (
        "duplicate_downstream", deal["invoice"].enterprise_id, duplicate,
    )  # fmt: skip


def test_an_invoice_tandem_never_heard_of_is_missing_in_tandem(sandbox):
    # given
    deal = _deal(sandbox)
    stray = _billing_invoice(sandbox, deal["customer"]["id"], "ORD-999999", 1200)
    # when
    _run()
    # then
    item = DriftItem.objects.get()
    assert (item.drift_type, item.tandem_ref, item.remote_ref, item.remote_amount) == (
        "missing_in_tandem", "", stray, Decimal("12.0000"),
    )  # fmt: skip


def test_an_invoice_billing_does_not_list_is_missing_in_billing(sandbox):
    # given
    deal = _deal(sandbox)
    extra = factories.invoice(account=deal["order"].account, order=deal["order"])
    _link(extra, "billing", "invoice", "in_gone")
    # when
    _run()
    # then
    item = DriftItem.objects.get()
    assert (item.drift_type, item.tandem_ref, item.remote_ref, item.tandem_amount) == (
        "missing_in_billing", extra.enterprise_id, "in_gone", Decimal("100.0000"),
    )  # fmt: skip


def _erp_deal(sandbox: SandboxClient) -> dict[str, Any]:
    order = factories.order()
    assert order.account is not None
    customer = sandbox.post(
        "erp", "/customers",
        {"externalId": order.account.enterprise_id, "companyName": "Northwind",
         "currency": {"refName": "GBP"}},
    ).json()  # fmt: skip
    sales_order = sandbox.post(
        "erp", "/salesorders",
        {"externalId": order.enterprise_id, "entity": {"id": customer["internalId"]},
         "currency": {"refName": "GBP"},
         "item": {"items": [{"item": {"externalId": "SKU-X"}, "quantity": "10",
                             "rate": "25.00"}]}},
    ).json()  # fmt: skip
    _link(order, "erp", "sales_order", sales_order["internalId"])
    return {"order": order, "sales_order": sales_order}


def test_an_erp_order_line_edited_in_the_erp_is_amount_drift(sandbox):
    # given
    deal = _erp_deal(sandbox)
    assert _run("erp").found == 0
    edited = sandbox.control(
        "POST", f"/erp/salesorders/{deal['sales_order']['internalId']}/lines/1", {"quantity": 12}
    )
    assert edited.status_code == 200, edited.text
    # when
    run = _run("erp")
    # then
    assert run.found == 1
    item = DriftItem.objects.get()
    assert (item.object_type, item.drift_type, item.tandem_ref, item.difference) == (
        "sales_order", "amount", deal["order"].enterprise_id, Decimal("50.0000"),
    )  # fmt: skip
    assert item.detail == "250.00 in Tandem, 300.00 in erp"


def test_an_erp_order_cancelled_in_the_erp_is_status_drift(sandbox):
    # given
    deal = _erp_deal(sandbox)
    sandbox.post("erp", f"/salesorders/{deal['sales_order']['internalId']}/cancel", {})
    # when
    _run("erp")
    # then
    assert _open() == [("sales_order", "status", deal["order"].enterprise_id)]


def test_an_incremental_run_reads_only_what_changed_and_closes_what_it_examined(sandbox):
    # given two deals reconciled in full, then one invoice voided in billing
    first, second = _deal(sandbox), _deal(sandbox)
    full = _run()
    assert (full.found, full.remote_rows) == (0, 4)
    time.sleep(1.1)  # the listing's updated_since is in whole seconds
    since = timezone.now()
    sandbox.post("billing", f"/invoices/{second['subscription']['latest_invoice']}/void")
    # when
    incremental = _run(since=since)
    # then: only the voided invoice was read from billing, and nothing else in Tandem
    assert (incremental.remote_rows, incremental.tandem_rows, incremental.found) == (1, 0, 1)
    assert _open() == [("invoice", "status", second["invoice"].enterprise_id)]
    # when Tandem voids it too, an incremental run sees that change and closes the drift
    time.sleep(1.1)
    later = timezone.now()
    q2c.invoice_void(invoice=second["invoice"], actor=factories.actor(), reason="voided")
    closing = _run(since=later)
    # then
    assert (closing.tandem_rows, closing.remote_rows, closing.closed) == (1, 0, 1)
    assert _open() == []
    assert first["invoice"].enterprise_id not in {i.tandem_ref for i in DriftItem.objects.all()}


def test_a_system_whose_connector_cannot_list_is_refused_and_the_others_still_run(
    sandbox, settings
):
    # given an ERP connector without listings (as Tryton's today)
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = {
        **settings.TANDEM_CONNECTOR_IMPLEMENTATIONS,
        "erp": "orchestration.connectors.tryton.erp.TrytonErp",
    }
    _deal(sandbox)
    # when
    from orchestration.reconciliation.tasks import reconcile

    runs = reconcile(system="all", full=True)
    # then
    assert list(ReconciliationRun.objects.values_list("system", "state")) == [
        ("billing", "succeeded")
    ]
    assert runs == [ReconciliationRun.objects.get().pk]
