"""An amendment of an active contract, as its own workflow on the amendment order.

The amendment order carries the contract's lines as they will be. The ERP gets a sale for
the difference (referenced by the amendment order, found by that reference before it is
created); once the ERP accepted it, billing's subscription is updated to the new lines
with prorations (never before); then the contract gets a new active version, effective on
the amendment's date, naming the order that caused it. Step keys are the amendment order's,
so a redelivered message, a replay or a lost answer changes each system once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import cast

from django.db import transaction
from django.utils import timezone

from core.errors import DATA_REFUSALS, Refused
from core.records import LineKind
from masterdata.models import ExternalId
from orchestration.connectors.billing_common import AMENDMENT_KEY
from orchestration.connectors.interfaces import RemoteLine
from orchestration.connectors.registry import connector_for
from orchestration.workflows.compensations import CANCEL_ERP_ORDER
from orchestration.workflows.engine import (
    Done,
    StepContext,
    StepDef,
    WorkflowDef,
    workflow_signal,
)
from orchestration.workflows.engine import workflow_register as _register
from orchestration.workflows.errors import StepFailed, StepRetryable
from orchestration.workflows.lifecycle import VERSION_DUE, await_effective_date, versions_signal_due
from orchestration.workflows.quote_to_cash import (
    await_financial_acceptance,
    check_tax_and_entity,
    map_products,
    upsert_customer_erp,
    validate_quote,
)
from orchestration.workflows.steps import (
    connector_errors,
    crosswalk_link,
    line_price_ensure,
    net_unit_price,
    order_advance,
    order_lines,
    product_mappings,
    step_order,
    system_actor,
)
from q2c import lifecycle, services
from q2c.models import (
    Contract,
    ContractLine,
    ContractState,
    ContractVersion,
    Order,
    OrderState,
    VersionState,
)

KIND = "amendment"


def _contract(order: Order) -> Contract:
    if order.amends is None:
        raise StepFailed(
            f"{order.enterprise_id} amends no contract",
            category="validation",
            error_class="AmendmentInvalid",
        )
    return order.amends


def _version(order: Order) -> ContractVersion | None:
    """The contract version the amendment recorded when it arrived (None for an amendment
    recorded before versions named their base)."""
    return ContractVersion.objects.filter(order=order).select_related("base_version").first()


def _current_lines(order: Order) -> list[ContractLine]:
    """The lines the amendment changes: those of the version it amends (its base), else of
    the version in effect."""
    recorded = _version(order)
    version = (
        recorded.base_version
        if recorded is not None and recorded.base_version is not None
        else services.contract_active_version(contract=_contract(order))
    )
    if version is None:
        return []
    return list(version.lines.select_related("product").order_by("line_no"))


def _price_key(product_code: str, unit_price: Decimal) -> tuple[str, Decimal]:
    return (product_code, unit_price.quantize(Decimal("0.01")))


def _delta(order: Order) -> list[tuple[str, Decimal, Decimal, str]]:
    """(product code, net unit price, quantity, description) the amendment adds (positive) or
    takes away (negative), line by line of the same product at the same net price."""
    changes: dict[tuple[str, Decimal], Decimal] = {}
    descriptions: dict[tuple[str, Decimal], str] = {}
    for old in _current_lines(order):
        net = old.unit_price - old.unit_price * old.discount_percent / Decimal(100)
        key = _price_key(old.product_code, net)
        changes[key] = changes.get(key, Decimal(0)) - old.quantity
        descriptions[key] = old.description
    for line in order_lines(order):
        if line.kind != LineKind.RECURRING:
            continue
        key = _price_key(line.product_code, net_unit_price(line))
        changes[key] = changes.get(key, Decimal(0)) + line.quantity
        descriptions[key] = line.description
    return [
        (code, price, quantity, descriptions[(code, price)])
        for (code, price), quantity in changes.items()
        if quantity != 0
    ]


def validate_amendment(ctx: StepContext) -> Done:
    order = step_order(ctx)
    contract = _contract(order)
    problems = []
    recurring = [line for line in order_lines(order) if line.kind == LineKind.RECURRING]
    recorded = _version(order)
    if recorded is not None and recorded.state == VersionState.PARKED:
        raise StepFailed(f"{recorded} is parked: {recorded.parked_reason}",
                         category="validation", error_class="StaleContractChange")  # fmt: skip
    if recorded is not None and recorded.state != VersionState.PENDING:
        return Done(data={"already": "applied"})  # a replay after the contract changed
    if contract.state not in (ContractState.ACTIVE, ContractState.RENEWED):
        problems.append(f"{contract.enterprise_id} is {contract.state}, not active")
    if order.effective_date is None or not (
        contract.start_date <= order.effective_date <= contract.end_date
    ):
        problems.append("the amendment does not take effect within the contract term")
    if not recurring:
        problems.append("the amendment keeps no recurring line")
    if len({line.billing_period for line in recurring}) > 1:
        problems.append("an amendment changes one billing period at a time")
    if recorded is None and contract.versions.filter(order=order).exists():
        return Done(data={"already": "applied"})
    if not problems and not _delta(order):
        problems.append("the amendment changes nothing")
    if problems:
        raise StepFailed("; ".join(problems), category="validation", severity="medium",
                         error_class="AmendmentInvalid")  # fmt: skip
    return Done(data={"contract": contract.enterprise_id})


def create_erp_order(ctx: StepContext) -> Done:
    """Increases (and the amendment's one-time lines) as an ERP sale for the difference;
    decreases as an ERP return with positive quantities, never a negative sales line. Each
    is found by its reference before it is created. With no sale there is nothing for
    finance to accept: the run hears its own acceptance."""
    order = step_order(ctx)
    mappings = product_mappings(order)
    erp_item = {line.product_code: mappings[(line.line_no, "erp")].external_id
                for line in order_lines(order)}  # fmt: skip
    for old in _current_lines(order):
        if old.product_code not in erp_item and old.product is not None:
            mapping = old.product.mappings.filter(system="erp").first()
            if mapping is not None:
                erp_item[old.product_code] = mapping.external_id
    delta = _delta(order)
    sale = [
        RemoteLine(
            product_ref=erp_item[code], quantity=quantity, unit_price=price, description=description
        )
        for code, price, quantity, description in delta
        if quantity > 0
    ] + [
        RemoteLine(
            product_ref=erp_item[line.product_code],
            quantity=line.quantity,
            unit_price=net_unit_price(line),
            description=line.description,
        )
        for line in order_lines(order)
        if line.kind == LineKind.ONE_TIME
    ]
    given_back = [
        RemoteLine(
            product_ref=erp_item[code], quantity=-quantity, unit_price=price,
            description=f"Reduced: {description}",
        )
        for code, price, quantity, description in delta
        if quantity < 0
    ]  # fmt: skip
    customer_id = ctx.result_of("upsert_customer_erp")["external_id"]
    erp = connector_for("erp")
    record = returned = None
    found = False
    with connector_errors():
        if sale:
            existing = erp.sales_order_find(reference=order.enterprise_id)
            found = existing is not None
            record = existing or erp.sales_order_create(
                reference=order.enterprise_id, customer_id=str(customer_id),
                currency=order.currency, lines=sale, order_date=timezone.localdate(),
                idempotency_key=ctx.key,
            )  # fmt: skip
        if given_back:
            reference = f"{order.enterprise_id}:return"
            returned = erp.return_find(reference=reference) or erp.return_create(
                reference=reference, customer_id=str(customer_id), currency=order.currency,
                lines=given_back, order_date=timezone.localdate(),
                idempotency_key=f"{ctx.key}:return",
            )  # fmt: skip
    if record is not None:
        crosswalk_link(order, "erp", "sales_order", record.id)
    if returned is not None:
        crosswalk_link(order, "erp", "return", returned.id)
    return_id = returned.id if returned is not None else ""
    told = f"ERP sales order {record.id}" if record is not None else f"ERP return {return_id}"
    order_advance(order, OrderState.VALIDATED, services.order_submit_to_erp, told)
    if record is None:
        accepted = {"order_id": order.enterprise_id, "erp_return_id": return_id}
        workflow_signal(run=ctx.run, event_type="order.accepted", payload=accepted)
    main = record or returned
    assert main is not None
    return Done(
        main.id,
        {
            "number": main.number,
            "found": found,
            "sale": record.id if record else "",
            "return": returned.id if returned else "",
        },
    )


def update_subscription(ctx: StepContext) -> Done:
    order = step_order(ctx)
    if order.state == OrderState.SUBMITTED_TO_ERP:  # never bill before financial acceptance
        raise StepRetryable("the ERP has not accepted the amendment yet", retry_after=5)
    contract = _contract(order)
    subscription_id = (
        ExternalId.objects.filter(
            system="billing", object_type="subscription", enterprise_id=contract.enterprise_id
        )
        .order_by("pk")
        .values_list("external_id", flat=True)
        .first()
    )
    if subscription_id is None:
        raise StepFailed(
            f"{contract.enterprise_id} has no billing subscription",
            category="validation", error_class="AmendmentInvalid",
        )  # fmt: skip
    mappings = product_mappings(order)
    billing = connector_for("billing")
    sales_order = ctx.result_of("create_erp_order").get("sale") or ""
    compensation = (
        f"cancel ERP sales order {sales_order} for {order.enterprise_id}" if sales_order else ""
    )
    with connector_errors(compensation=compensation):
        items = []
        for line in order_lines(order):
            if line.kind != LineKind.RECURRING:
                continue
            mapping = mappings[(line.line_no, "billing")]
            price = line_price_ensure(billing, order, line, mapping=mapping, step_key=ctx.key)
            items.append((price.id, int(line.quantity)))
        current = billing.subscription_get(subscription_id=subscription_id)
        # An update whose answer was lost has already happened: the subscription carries the
        # amendment's mark, or (where billing drops metadata on update, as localstripe does)
        # already has exactly the amended items. Either way it is not sent twice.
        prices = cast(list[str], current.data["price_ids"])
        has = sorted(zip(prices, cast(list[int], current.data["quantities"]), strict=True))
        updated = current.data.get("amendment_reference") == order.enterprise_id or has == sorted(
            items
        )
        if not updated:
            current = billing.subscription_update(
                subscription_id=subscription_id,
                items=[(price_id, Decimal(quantity)) for price_id, quantity in items],
                idempotency_key=ctx.key,
                metadata={AMENDMENT_KEY: order.enterprise_id},
            )
    order_advance(order, OrderState.ACCEPTED, services.order_start_provisioning,
          f"subscription {subscription_id} updated")  # fmt: skip
    return Done(subscription_id, {"found": updated, "contract": contract.enterprise_id})


def record_credit_note(ctx: StepContext) -> Done:
    """A decrease gives the unused part of the period back: a credit note for the reduced
    quantities from the effective date (what billing's proration credits), once."""
    order = step_order(ctx)
    version = _version(order)
    reduced = [
        services.LineInput(
            product_code=code, kind=LineKind.RECURRING, quantity=-quantity, unit_price=price,
            description=description,
            billing_period=next(
                (line.billing_period for line in _current_lines(order)
                 if line.product_code == code), "month",
            ),
        )
        for code, price, quantity, description in _delta(order)
        if quantity < 0
    ]  # fmt: skip
    if version is None or not reduced or order.effective_date is None:
        return Done(data={"skipped": "nothing reduced"})
    credit = lifecycle.unused_credit(
        contract=_contract(order), lines=reduced, on=order.effective_date
    )
    total = sum((c.amount for c in credit), Decimal("0.00"))
    if total <= 0:
        return Done(data={"skipped": "nothing left in the period to credit"})
    note = lifecycle.credit_note_for_version(
        version=version, amount=total, actor=system_actor(),
        reason=f"decrease {order.enterprise_id}: unused period credited",
    )  # fmt: skip
    return Done(note.enterprise_id, {"amount": str(note.amount)})


def apply_to_contract(ctx: StepContext) -> Done:
    order = step_order(ctx)
    contract = _contract(order)
    version = _version(order)
    try:
        if version is not None:
            version = lifecycle.contract_version_apply(
                version=version, actor=system_actor(), reason=f"amendment {order.enterprise_id}"
            )
        else:
            assert order.effective_date is not None
            version = services.contract_amend(
                contract=contract,
                effective_date=order.effective_date,
                lines=[
                    services.LineInput(
                        product_code=line.product_code,
                        product=line.product,
                        kind=line.kind,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                        description=line.description,
                        discount_percent=line.discount_percent,
                        billing_period=line.billing_period,
                        term_start=line.term_start,
                        term_end=line.term_end,
                    )
                    for line in order_lines(order)
                    if line.kind == LineKind.RECURRING
                ],
                order=order,
                actor=system_actor(),
                reason=f"amendment {order.enterprise_id}",
            )
    except Refused as exc:
        if exc.kind not in DATA_REFUSALS:
            raise
        raise StepFailed(exc.message, category="validation",
                         error_class="AmendmentInvalid") from exc  # fmt: skip
    transaction.on_commit(lambda: versions_signal_due(contract=contract))
    order_advance(order, OrderState.PROVISIONING, services.order_activate, "amendment in effect")
    return Done(contract.enterprise_id, {"version": version.number})


AMENDMENT = _register(
    WorkflowDef(
        kind=KIND,
        steps=[
            StepDef("validate_quote", validate_quote, has_effect=False),
            StepDef("validate_amendment", validate_amendment, has_effect=False),
            StepDef("map_products", map_products, has_effect=False),
            StepDef("check_tax_and_entity", check_tax_and_entity, system="tax", has_effect=False),
            StepDef("upsert_customer_erp", upsert_customer_erp, system="erp"),
            StepDef("create_erp_order", create_erp_order, system="erp"),
            StepDef(
                "await_financial_acceptance",
                await_financial_acceptance,
                waits_for="order.accepted",
                has_effect=False,
            ),
            StepDef(
                "await_effective_date",
                await_effective_date,
                waits_for=VERSION_DUE,
                has_effect=False,
            ),
            StepDef("update_subscription", update_subscription, system="billing"),
            StepDef("record_credit_note", record_credit_note),
            StepDef("apply_to_contract", apply_to_contract, has_effect=False),
        ],
        compensations=(CANCEL_ERP_ORDER,),
    )
)
