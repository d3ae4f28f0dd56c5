"""Every service writes its history rows with the actor and the exact reason, and refuses to
write anything without a reason.

One case per service: ``prepare`` builds what the service needs (as the worker, "test setup")
and returns the call to make; ``writes`` lists the history rows the call leaves, by model and
history type ("+" created, "~" changed).
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.audit import Actor
from core.errors import ReasonRequired
from core.money import Money
from core.records import BillingPeriod, LineKind
from masterdata.services import duplicates as md_duplicates
from masterdata.services import merges as md_merges
from masterdata.services import records as md
from q2c import services
from q2c.models import ContractState, InvoiceState, OrderState
from tests import factories
from tests.q2c.helpers import database_snapshot, history_marks, history_since, order_in, quote

Run = Callable[[Actor, Any], object]


@dataclass(frozen=True)
class Case:
    prepare: Callable[[], Run]
    writes: list[tuple[str, str]]


APPROVED_AT = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)


def _legal_entity_create() -> Run:
    return lambda actor, reason: md.legal_entity_create(
        code="DE01", name="Tandem GmbH", country="DE", currency="EUR", actor=actor, reason=reason
    )


def _account_create() -> Run:
    entity = factories.legal_entity()
    return lambda actor, reason: md.account_create(
        legal_name="Acme GmbH",
        country="DE",
        currency="EUR",
        legal_entity=entity,
        domain="acme.example",
        actor=actor,
        reason=reason,
    )


def _external_id_link() -> Run:
    account = factories.account()
    return lambda actor, reason: md.external_id_link(
        record=account,
        system="crm",
        object_type="account",
        external_id="0015g00000XyZ",
        actor=actor,
        reason=reason,
    )


def _product_create() -> Run:
    return lambda actor, reason: md.product_create(
        sku="ANALYTICS",
        name="Analytics",
        kind=LineKind.RECURRING,
        billing_period=BillingPeriod.MONTH,
        actor=actor,
        reason=reason,
    )


def _product_map() -> Run:
    product = factories.product()
    return lambda actor, reason: md.product_map(
        product=product,
        system="billing",
        external_id="plan_analytics",
        external_kind="plan",
        actor=actor,
        reason=reason,
    )


def _quote_create() -> Run:
    account = factories.account()
    return lambda actor, reason: services.quote_create(
        cpq_quote_id="CPQ-4711",
        account=account,
        legal_entity=account.legal_entity,
        currency="GBP",
        approved_at=APPROVED_AT,
        lines=[factories.line(), factories.line(product_code="SKU-Y", kind=LineKind.ONE_TIME)],
        actor=actor,
        reason=reason,
    )


def _order_create() -> Run:
    account = factories.account()
    return lambda actor, reason: services.order_create(
        account=account,
        legal_entity=account.legal_entity,
        currency="GBP",
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )


def _account_update_address() -> Run:
    account = factories.account(address_line1="1 High St", city="London", postcode="00000")
    return lambda actor, reason: md.account_update_address(
        account=account, address_line1="1 High Street", city="London", postcode="EC1A 1AA",
        country="GB", actor=actor, reason=reason,
    )  # fmt: skip


def _quote_correct_customer_snapshot() -> Run:
    entity = factories.legal_entity()
    quote = services.quote_create(
        cpq_quote_id="CPQ-4712", account=None, legal_entity=entity, currency="GBP",
        approved_at=APPROVED_AT, lines=[factories.line()], customer_snapshot={"name": "Acme"},
        actor=factories.actor(), reason="setup",
    )  # fmt: skip
    return lambda actor, reason: services.quote_correct_customer_snapshot(
        quote=quote, snapshot={"name": "Acme Ltd", "country": "GB", "currency": "GBP"},
        actor=actor, reason=reason,
    )  # fmt: skip


def _order_assign_account() -> Run:
    account = factories.account()
    order = services.order_create(
        account=None,
        legal_entity=account.legal_entity,
        currency="GBP",
        lines=[factories.line()],
        actor=factories.actor(),
        reason="setup",
    )
    return lambda actor, reason: services.order_assign_account(
        order=order, account=account, actor=actor, reason=reason
    )


def _order_lines_link_products() -> Run:
    account = factories.account()
    order = services.order_create(
        account=account,
        legal_entity=account.legal_entity,
        currency="GBP",
        lines=[factories.line(product_code="LATE-SKU")],
        actor=factories.actor(),
        reason="setup",
    )
    md.product_create(
        sku="LATE-SKU", name="Late product", kind=LineKind.RECURRING,
        billing_period=BillingPeriod.MONTH, actor=factories.actor(), reason="setup",
    )  # fmt: skip
    return lambda actor, reason: services.order_lines_link_products(
        order=order, actor=actor, reason=reason
    )


def _quote_convert_to_order() -> Run:
    record = quote()
    return lambda actor, reason: services.quote_convert_to_order(
        quote=record, actor=actor, reason=reason
    )


def _order_step(name: str, source: str) -> Callable[[], Run]:
    def prepare() -> Run:
        order = order_in(source)
        service = getattr(services, f"order_{name}")
        return lambda actor, reason: service(order=order, actor=actor, reason=reason)

    return prepare


def _contract_create() -> Run:
    account = factories.account()
    return lambda actor, reason: services.contract_create(
        account=account,
        legal_entity=account.legal_entity,
        currency="GBP",
        start_date=dt.date(2026, 1, 1),
        end_date=dt.date(2026, 12, 31),
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )


def _contract_in(state: str) -> Any:
    contract = factories.contract()
    worker = factories.actor()
    if state in (ContractState.ACTIVE, ContractState.RENEWED):
        services.contract_activate(contract=contract, actor=worker, reason="test setup")
    if state == ContractState.RENEWED:
        services.contract_renew(
            contract=contract,
            new_end_date=dt.date(2027, 12, 31),
            lines=[factories.line()],
            actor=worker,
            reason="test setup",
        )
    return contract


def _contract_activate() -> Run:
    contract = _contract_in(ContractState.PENDING_ACTIVATION)
    return lambda actor, reason: services.contract_activate(
        contract=contract, actor=actor, reason=reason
    )


def _contract_amend() -> Run:
    contract = _contract_in(ContractState.ACTIVE)
    return lambda actor, reason: services.contract_amend(
        contract=contract,
        effective_date=dt.date(2026, 7, 1),
        lines=[factories.line(quantity=Decimal("15"))],
        actor=actor,
        reason=reason,
    )


def _amendment_order_create() -> Run:
    contract = _contract_in(ContractState.ACTIVE)
    return lambda actor, reason: services.amendment_order_create(
        contract=contract,
        cpq_quote_id="AMD-1",
        effective_date=dt.date(2026, 7, 1),
        approved_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        lines=[factories.line(quantity=Decimal("15"))],
        actor=actor,
        reason=reason,
    )


def _contract_renew() -> Run:
    contract = _contract_in(ContractState.ACTIVE)
    return lambda actor, reason: services.contract_renew(
        contract=contract,
        new_end_date=dt.date(2027, 12, 31),
        lines=[factories.line()],
        actor=actor,
        reason=reason,
    )


def _contract_start_renewal_term() -> Run:
    contract = _contract_in(ContractState.RENEWED)
    return lambda actor, reason: services.contract_start_renewal_term(
        contract=contract, actor=actor, reason=reason
    )


def _contract_cancel() -> Run:
    contract = _contract_in(ContractState.ACTIVE)
    return lambda actor, reason: services.contract_cancel(
        contract=contract, effective_date=dt.date(2026, 6, 30), actor=actor, reason=reason
    )


def _invoice_create() -> Run:
    account = factories.account()
    return lambda actor, reason: services.invoice_create(
        account=account,
        legal_entity=account.legal_entity,
        currency="GBP",
        lines=[
            services.InvoiceLineInput(
                description="Analytics, January", quantity=Decimal("1"), unit_price=Decimal("250")
            )
        ],
        actor=actor,
        reason=reason,
    )


def _invoice_in(state: str) -> Any:
    invoice = factories.invoice()
    if state == InvoiceState.POSTED:
        services.invoice_post(invoice=invoice, actor=factories.actor(), reason="test setup")
    return invoice


def _invoice_post() -> Run:
    invoice = _invoice_in(InvoiceState.DRAFT)
    return lambda actor, reason: services.invoice_post(invoice=invoice, actor=actor, reason=reason)


def _invoice_void() -> Run:
    invoice = _invoice_in(InvoiceState.POSTED)
    return lambda actor, reason: services.invoice_void(invoice=invoice, actor=actor, reason=reason)


def _payment_record() -> Run:
    account = factories.account()
    return lambda actor, reason: services.payment_record(
        account=account,
        amount=Money(Decimal("40.00"), "GBP"),
        received_at=timezone.now(),
        method="card",
        actor=actor,
        reason=reason,
    )


def _payment_apply() -> Run:
    invoice = _invoice_in(InvoiceState.POSTED)
    payment = services.payment_record(
        account=invoice.account,
        amount=Money(Decimal("40.00"), "GBP"),
        received_at=timezone.now(),
        actor=factories.actor(),
        reason="test setup",
    )
    return lambda actor, reason: services.payment_apply(
        payment=payment, invoice=invoice, actor=actor, reason=reason
    )


def _applied_payment() -> Any:
    invoice = _invoice_in(InvoiceState.POSTED)
    payment = services.payment_record(
        account=invoice.account, amount=Money(Decimal("40.00"), "GBP"),
        received_at=timezone.now(), actor=factories.actor(), reason="test setup",
    )  # fmt: skip
    services.payment_apply(
        payment=payment, invoice=invoice, actor=factories.actor(), reason="test setup"
    )
    return payment


def _payment_fail() -> Run:
    account = factories.account()
    payment = services.payment_record(
        account=account, amount=Money(Decimal("40.00"), "GBP"), received_at=timezone.now(),
        actor=factories.actor(), reason="test setup",
    )  # fmt: skip
    return lambda actor, reason: services.payment_fail(payment=payment, actor=actor, reason=reason)


def _payment_refund() -> Run:
    payment = _applied_payment()
    return lambda actor, reason: services.payment_refund(
        payment=payment, amount=Money(Decimal("15.00"), "GBP"), refunded_at=timezone.now(),
        actor=actor, reason=reason,
    )  # fmt: skip


def _credit_note_mirror() -> Run:
    invoice = _invoice_in(InvoiceState.POSTED)
    return lambda actor, reason: services.credit_note_mirror(
        invoice=invoice, amount=Money(Decimal("10.00"), "GBP"), number="CN-1",
        issued_at=timezone.now(), credit_reason="credit", actor=actor, reason=reason,
    )  # fmt: skip


def _account_update_tax_id() -> Run:
    account = factories.account(tax_id="GB123456789")
    return lambda actor, reason: md.account_update_tax_id(
        account=account, tax_id="GB987654321", actor=actor, reason=reason
    )


def _twins() -> tuple[Any, Any]:
    first = factories.account(legal_name="Acme Ltd")
    return first, factories.account(legal_name="Acme Ltd", legal_entity=first.legal_entity)


def _merge_requested(*, approval: bool) -> Any:
    from django.test import override_settings

    survivor, loser = _twins()
    with override_settings(TANDEM_MERGE_REQUIRES_APPROVAL=approval):
        return md_merges.merge_request(
            survivor=survivor, loser=loser, actor=factories.actor(), reason="test setup"
        )


def _candidate_dismiss() -> Run:
    from masterdata.models import DuplicateCandidate

    a, b = _twins()
    candidate = DuplicateCandidate.objects.create(
        account_a=a, account_b=b, score=Decimal("0.9"), evidence={}, fingerprint="f",
        detected_at=timezone.now(),
    )  # fmt: skip
    return lambda actor, reason: md_duplicates.candidate_dismiss(
        candidate=candidate, actor=actor, reason=reason
    )


def _merge_request() -> Run:
    survivor, loser = _twins()
    return lambda actor, reason: md_merges.merge_request(
        survivor=survivor, loser=loser, actor=actor, reason=reason
    )


def _group_merge() -> Run:
    survivor, second = _twins()
    third = factories.account(legal_name="ACME Limited", legal_entity=survivor.legal_entity)
    return lambda actor, reason: md_merges.group_merge(
        survivor=survivor, members=[survivor, second, third], actor=actor, reason=reason
    )


def _merge_approve() -> Run:
    merge = _merge_requested(approval=True)
    return lambda actor, reason: md_merges.merge_approve(merge=merge, actor=actor, reason=reason)


def _merge_reject() -> Run:
    merge = _merge_requested(approval=True)
    return lambda actor, reason: md_merges.merge_reject(merge=merge, actor=actor, reason=reason)


def _account_unmerge() -> Run:
    merge = _merge_requested(approval=False)
    return lambda actor, reason: md_merges.account_unmerge(merge=merge, actor=actor, reason=reason)


def _merge_push_retry() -> Run:
    from django.db import transaction

    from core.audit import audit_context
    from masterdata.models import PushState

    merge = _merge_requested(approval=False)
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        merge.push_state = PushState.FAILED
        merge.save()
    return lambda actor, reason: md_merges.merge_push_retry(merge=merge, actor=actor, reason=reason)


def _order_case(name: str, source: str) -> Case:
    return Case(_order_step(name, source), [("Order", "~")])


CASES: dict[str, Case] = {
    # masterdata.services
    "legal_entity_create": Case(_legal_entity_create, [("LegalEntity", "+")]),
    "account_create": Case(_account_create, [("Account", "+")]),
    "account_update_address": Case(_account_update_address, [("Account", "~")]),
    "account_update_tax_id": Case(_account_update_tax_id, [("Account", "~")]),
    "external_id_link": Case(_external_id_link, [("ExternalId", "+")]),
    "product_create": Case(_product_create, [("Product", "+")]),
    "product_map": Case(_product_map, [("ProductMapping", "+")]),
    "candidate_dismiss": Case(_candidate_dismiss, [("DuplicateCandidate", "~")]),
    "merge_request": Case(
        _merge_request,
        [("Account", "~"), ("AccountAlias", "+"), ("MergeRecord", "+"), ("MergeRecord", "~")],
    ),
    # Two merges; the second also changes the survivor (the newer loser's name survives).
    "group_merge": Case(
        _group_merge,
        [("Account", "~"), ("AccountAlias", "+"), ("MergeRecord", "+"), ("MergeRecord", "~")] * 2
        + [("Account", "~")],
    ),
    "merge_approve": Case(
        _merge_approve, [("Account", "~"), ("AccountAlias", "+"), ("MergeRecord", "~")]
    ),
    "merge_reject": Case(_merge_reject, [("MergeRecord", "~")]),
    "account_unmerge": Case(
        _account_unmerge, [("Account", "~"), ("AccountAlias", "-"), ("MergeRecord", "~")]
    ),
    "merge_push_retry": Case(_merge_push_retry, [("MergeRecord", "~")]),
    # q2c.services
    "payment_fail": Case(_payment_fail, [("Payment", "~")]),
    "payment_refund": Case(_payment_refund, [("Payment", "~"), ("Refund", "+")]),
    "credit_note_mirror": Case(_credit_note_mirror, [("CreditNote", "+"), ("CreditNote", "~")]),
    "quote_create": Case(
        _quote_create, [("Quote", "+"), ("Quote", "~"), ("QuoteLine", "+"), ("QuoteLine", "+")]
    ),
    "order_create": Case(_order_create, [("Order", "+"), ("Order", "~"), ("OrderLine", "+")]),
    "order_assign_account": Case(_order_assign_account, [("Order", "~")]),
    "quote_correct_customer_snapshot": Case(_quote_correct_customer_snapshot, [("Quote", "~")]),
    "order_lines_link_products": Case(_order_lines_link_products, [("OrderLine", "~")]),
    "quote_convert_to_order": Case(
        _quote_convert_to_order,
        [("Order", "+"), ("Order", "~"), ("OrderLine", "+"), ("Quote", "~")],
    ),
    "order_validate": _order_case("validate", OrderState.RECEIVED),
    "order_submit_to_erp": _order_case("submit_to_erp", OrderState.VALIDATED),
    "order_accept": _order_case("accept", OrderState.SUBMITTED_TO_ERP),
    "order_start_provisioning": _order_case("start_provisioning", OrderState.ACCEPTED),
    "order_activate": _order_case("activate", OrderState.PROVISIONING),
    "order_fulfil": _order_case("fulfil", OrderState.ACTIVE),
    "order_hold": _order_case("hold", OrderState.RECEIVED),
    "order_release": _order_case("release", OrderState.ON_HOLD),
    "order_reject": _order_case("reject", OrderState.VALIDATED),
    "order_cancel": _order_case("cancel", OrderState.ACCEPTED),
    "contract_create": Case(
        _contract_create,
        [("Contract", "+"), ("ContractLine", "+"), ("ContractVersion", "+")],
    ),
    "contract_activate": Case(_contract_activate, [("Contract", "~"), ("ContractVersion", "~")]),
    "contract_amend": Case(
        _contract_amend,
        [
            ("Contract", "~"),
            ("ContractLine", "+"),
            ("ContractVersion", "+"),
            ("ContractVersion", "~"),
            ("ContractVersion", "~"),
        ],
    ),
    "amendment_order_create": Case(
        _amendment_order_create,
        [
            ("Order", "+"),
            ("Order", "~"),
            ("Order", "~"),
            ("OrderLine", "+"),
            ("Quote", "+"),
            ("Quote", "~"),
            ("Quote", "~"),
            ("QuoteLine", "+"),
        ],
    ),
    "contract_renew": Case(
        _contract_renew, [("Contract", "~"), ("ContractLine", "+"), ("ContractVersion", "+")]
    ),
    "contract_start_renewal_term": Case(
        _contract_start_renewal_term,
        [("Contract", "~"), ("ContractVersion", "~"), ("ContractVersion", "~")],
    ),
    "contract_cancel": Case(
        _contract_cancel,
        [
            ("Contract", "~"),
            ("ContractVersion", "+"),
            ("ContractVersion", "~"),
            ("ContractVersion", "~"),
        ],
    ),
    "invoice_create": Case(
        _invoice_create, [("Invoice", "+"), ("Invoice", "~"), ("InvoiceLine", "+")]
    ),
    "invoice_post": Case(_invoice_post, [("Invoice", "~")]),
    "invoice_void": Case(_invoice_void, [("Invoice", "~")]),
    "payment_record": Case(_payment_record, [("Payment", "+")]),
    "payment_apply": Case(_payment_apply, [("Invoice", "~"), ("Payment", "~")]),
}


def _services_taking_a_reason() -> list[str]:
    names = []
    for module in (services, md, md_duplicates, md_merges):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            if "reason" in inspect.signature(function).parameters:
                names.append(name)
    return sorted(names)


def test_every_service_taking_a_reason_has_a_case():
    # given / when
    names = _services_taking_a_reason()
    # then
    assert names == sorted(CASES)


@pytest.mark.django_db
@pytest.mark.parametrize("service", sorted(CASES))
@pytest.mark.parametrize("actor_name", ["olivia", "connector:erp"])
def test_history_carries_the_actor_and_the_exact_reason(service, actor_name, make_user):
    # given
    run = CASES[service].prepare()
    if actor_name == "olivia":
        actor = Actor.person(make_user(actor_name, is_superuser=True))
    else:
        actor = Actor.system(actor_name)
    reason = f"{service}, as agreed on ticket OPS-4711"
    marks = history_marks()
    # when
    run(actor, reason)
    # then
    assert history_since(marks) == sorted(
        (model, kind, actor_name, reason) for model, kind in CASES[service].writes
    )


@pytest.mark.django_db
@pytest.mark.parametrize("service", sorted(CASES))
@pytest.mark.parametrize("reason", [None, "", "  \t "], ids=["missing", "empty", "blank"])
def test_no_reason_is_refused_and_nothing_is_written(service, reason, make_user):
    # given
    run = CASES[service].prepare()
    actor = Actor.person(make_user("olivia", is_superuser=True))
    before = database_snapshot()
    # when
    with pytest.raises(ReasonRequired):
        run(actor, reason)
    # then
    assert database_snapshot() == before


@pytest.mark.django_db
def test_expiry_is_written_by_the_worker_with_the_term_end_as_reason():
    # given
    contract = _contract_in(ContractState.ACTIVE)
    marks = history_marks()
    # when
    expired = services.contracts_expire_ended(today=dt.date(2027, 1, 1))
    # then
    assert expired == 1
    assert history_since(marks) == [("Contract", "~", "worker", "term ended on 2026-12-31")]
    contract.refresh_from_db()
    assert contract.state == ContractState.EXPIRED
