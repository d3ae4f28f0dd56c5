import datetime as dt
from decimal import Decimal

import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import Party, RemoteLine, RemoteRecord
from orchestration.connectors.sandbox.erp import SandboxErp
from orchestration.models import OutboundCall
from tests.orchestration.connectors.helpers import (
    faults_off,
    impatient_transport,
    record_counts,
    responses_lost,
    throttled,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]

NORTHWIND = Party(
    reference="ACC-000001",
    name="Northwind Traders Ltd",
    country="GB",
    currency="GBP",
    email="ap@northwind.example",
    tax_id="GB123456789",
    address_line1="1 High Street",
    city="London",
    postcode="EC1A 1AA",
    erp_subsidiary="2",
)
LINES = [
    RemoteLine("ONBOARD", Decimal("1"), Decimal("1500.00"), "Onboarding"),
    RemoteLine("TRAINING", Decimal("2.5"), Decimal("200.00")),
]


def _order(erp: SandboxErp, customer_id: str, reference: str = "ORD-000001") -> RemoteRecord:
    return erp.sales_order_create(
        reference=reference,
        customer_id=customer_id,
        currency="GBP",
        lines=LINES,
        order_date=dt.date(2026, 1, 5),
        idempotency_key=f"{reference}:erp.sales_order:1",
    )


def test_customer_create_sends_the_party_and_is_found_by_reference(sandbox):
    # given
    erp = SandboxErp()
    # when
    created = erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    found = erp.customer_find(reference="ACC-000001")
    # then
    assert created == RemoteRecord(
        id="1001",
        status="active",
        number="CUST1001",
        data={"external_id": "ACC-000001", "subsidiary_id": "2", "currency": "GBP"},
    )
    assert found == created
    [stored] = sandbox.state("erp")["records"]["customers"]
    assert (stored["companyName"], stored["email"], stored["vatRegNumber"]) == (
        "Northwind Traders Ltd",
        "ap@northwind.example",
        "GB123456789",
    )
    assert stored["billAddress"] == {
        "addr1": "1 High Street",
        "addr2": None,
        "city": "London",
        "state": None,
        "zip": "EC1A 1AA",
        "country": "GB",
    }
    calls = list(OutboundCall.objects.order_by("pk").values_list("operation", "idempotency_key"))
    assert calls == [("customer_create", "ACC-000001:erp.customer:1"), ("customer_find", "")]


def test_customer_find_of_an_unknown_reference_is_none(sandbox):
    # when
    found = SandboxErp().customer_find(reference="ACC-999999")
    # then
    assert found is None


def test_sales_order_create_find_and_cancel(sandbox):
    # given
    erp = SandboxErp()
    customer = erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    # when
    created = _order(erp, customer.id)
    found = erp.sales_order_find(reference="ORD-000001")
    cancelled = erp.sales_order_cancel(
        sales_order_id=created.id, idempotency_key="ORD-000001:erp.sales_order_cancel:1"
    )
    # then
    assert created == RemoteRecord(
        id="5001",
        status="pendingApproval",
        number="SO10001",
        data={
            "external_id": "ORD-000001",
            "customer_id": "1001",
            "subsidiary_id": "2",
            "currency": "GBP",
            "total": "2000.00",
            "approved_at": "",
        },
    )
    assert found == created
    assert (cancelled.id, cancelled.status) == ("5001", "cancelled")
    [order] = sandbox.state("erp")["records"]["salesorders"]
    assert [
        (line["item"]["externalId"], line["quantity"], line["rate"], line["amount"])
        for line in order["item"]["items"]
    ] == [("ONBOARD", "1", "1500.00", "1500.00"), ("TRAINING", "2.5", "200.00", "500.00")]


def test_invoice_bills_an_approved_sales_order_and_is_found_by_reference(sandbox):
    # given
    erp = SandboxErp()
    customer = erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    order = _order(erp, customer.id)
    assert sandbox.control("POST", f"/erp/approve/{order.id}").status_code == 200
    # when
    invoice = erp.invoice_create(
        reference="INV-000001",
        customer_id=customer.id,
        sales_order_id=order.id,
        currency="GBP",
        lines=[],
        idempotency_key="INV-000001:erp.invoice:1",
    )
    found = erp.invoice_find(reference="INV-000001")
    # then
    assert invoice.id == "8001"
    assert (invoice.status, invoice.number) == ("open", "INV10001")
    assert invoice.data == {
        "external_id": "INV-000001",
        "customer_id": "1001",
        "sales_order_id": "5001",
        "currency": "GBP",
        "total": "2000.00",
        "tax_total": "0.00",
        "amount_remaining": "2000.00",
        "due_date": invoice.data["due_date"],
    }
    assert found == invoice
    assert erp.sales_order_find(reference="ORD-000001").status == "fullyBilled"


def test_stand_alone_invoice_bills_the_customer_for_the_lines(sandbox):
    # given
    erp = SandboxErp()
    customer = erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    # when
    invoice = erp.invoice_create(
        reference="INV-000002",
        customer_id=customer.id,
        sales_order_id="",
        currency="GBP",
        lines=[RemoteLine("SUPPORT", Decimal("3"), Decimal("99.99"))],
        idempotency_key="INV-000002:erp.invoice:1",
    )
    # then
    assert (invoice.data["sales_order_id"], invoice.data["total"]) == ("", "299.97")


def test_customer_committed_with_its_response_lost_is_found_not_made_twice(sandbox):
    # given
    responses_lost(sandbox, "erp")
    # when
    with pytest.raises(RetryableError) as raised:
        SandboxErp(impatient_transport(sandbox, "erp")).customer_create(
            party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1"
        )
    faults_off(sandbox, "erp")
    found = SandboxErp().customer_find(reference="ACC-000001")
    # then
    assert (raised.value.kind, raised.value.status) == ("timeout", None)
    assert found is not None
    assert (found.id, found.data["external_id"]) == ("1001", "ACC-000001")
    assert record_counts(sandbox)["erp"] == {
        "customers": 1,
        "salesorders": 0,
        "invoices": 0,
        "items": 0,
        "creditmemos": 0,
        "customerpayments": 0,
        "customerrefunds": 0,
        "returnauthorizations": 0,
    }


def test_sales_order_committed_with_its_response_lost_is_found_not_made_twice(sandbox):
    # given
    erp = SandboxErp()
    customer = erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    responses_lost(sandbox, "erp")
    # when
    with pytest.raises(RetryableError):
        _order(SandboxErp(impatient_transport(sandbox, "erp")), customer.id)
    faults_off(sandbox, "erp")
    found = erp.sales_order_find(reference="ORD-000001")
    # then
    assert found is not None
    assert (found.id, found.status, found.number) == ("5001", "pendingApproval", "SO10001")
    assert record_counts(sandbox)["erp"]["salesorders"] == 1


def test_a_second_customer_with_the_same_reference_is_refused_with_the_erp_message(sandbox):
    # given
    erp = SandboxErp()
    erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    # when
    with pytest.raises(PermanentError) as raised:
        erp.customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:2")
    # then
    error = raised.value
    assert (error.system, error.status, error.kind, error.message) == (
        "erp",
        400,
        "validation",
        "This record already exists: a customer with externalId ACC-000001 (internalId 1001).",
    )
    assert record_counts(sandbox)["erp"]["customers"] == 1
    row = OutboundCall.objects.get(pk=error.outbound_call_id)
    assert (row.outcome, row.error_message) == ("permanent", error.message)


def test_throttled_erp_is_retryable_with_its_retry_after(sandbox):
    # given
    throttled(sandbox, "erp", retry_after_s=7)
    # when
    with pytest.raises(RetryableError) as raised:
        SandboxErp().customer_create(party=NORTHWIND, idempotency_key="ACC-000001:erp.customer:1")
    # then
    error = raised.value
    assert (error.status, error.kind, error.retry_after) == (429, "rate_limited", 7)
    assert error.message == "Request blocked by the request limit of the account. Try again later."
    assert record_counts(sandbox)["erp"]["customers"] == 0
