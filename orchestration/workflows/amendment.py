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

from django.utils import timezone

from core.errors import DATA_REFUSALS, Refused
from core.records import LineKind
from masterdata.models import ExternalId
from orchestration.connectors.billing_common import AMENDMENT_KEY
from orchestration.connectors.interfaces import RemoteLine
from orchestration.connectors.registry import connector_for
from orchestration.workflows.compensations import CANCEL_ERP_ORDER
from orchestration.workflows.engine import Done, StepContext, StepDef, WorkflowDef
from orchestration.workflows.engine import workflow_register as _register
from orchestration.workflows.errors import StepFailed, StepRetryable
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
from q2c import services
from q2c.models import Contract, ContractLine, ContractState, Order, OrderState

KIND = "amendment"


def _contract(order: Order) -> Contract:
    if order.amends is None:
        raise StepFailed(
            f"{order.enterprise_id} amends no contract",
            category="validation",
            error_class="AmendmentInvalid",
        )
    return order.amends


def _current_lines(contract: Contract) -> list[ContractLine]:
    version = services.contract_active_version(contract=contract)
    if version is None:
        return []
    return list(version.lines.order_by("line_no"))


def _price_key(product_code: str, unit_price: Decimal) -> tuple[str, Decimal]:
    return (product_code, unit_price.quantize(Decimal("0.01")))


def _delta(order: Order) -> list[tuple[str, Decimal, Decimal, str]]:
    """(product code, net unit price, quantity, description) the amendment adds (positive) or
    takes away (negative), line by line of the same product at the same net price."""
    changes: dict[tuple[str, Decimal], Decimal] = {}
    descriptions: dict[tuple[str, Decimal], str] = {}
    for old in _current_lines(_contract(order)):
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
    if contract.state != ContractState.ACTIVE:
        problems.append(f"{contract.enterprise_id} is {contract.state}, not active")
    if order.effective_date is None or not (
        contract.start_date <= order.effective_date <= contract.end_date
    ):
        problems.append("the amendment does not take effect within the contract term")
    if not recurring:
        problems.append("the amendment keeps no recurring line")
    if len({line.billing_period for line in recurring}) > 1:
        problems.append("an amendment changes one billing period at a time")
    if contract.versions.filter(order=order).exists():
        return Done(data={"already": "applied"})  # a replay after the contract changed
    if not problems and not _delta(order):
        problems.append("the amendment changes nothing")
    if problems:
        raise StepFailed("; ".join(problems), category="validation", severity="medium",
                         error_class="AmendmentInvalid")  # fmt: skip
    return Done(data={"contract": contract.enterprise_id})


def create_erp_order(ctx: StepContext) -> Done:
    """A sale in the ERP for the difference, plus the amendment's one-time lines."""
    order = step_order(ctx)
    mappings = product_mappings(order)
    erp_item = {line.product_code: mappings[(line.line_no, "erp")].external_id
                for line in order_lines(order)}  # fmt: skip
    for old in _current_lines(_contract(order)):
        if old.product_code not in erp_item and old.product is not None:
            mapping = old.product.mappings.filter(system="erp").first()
            if mapping is not None:
                erp_item[old.product_code] = mapping.external_id
    lines = [
        RemoteLine(
            product_ref=erp_item[code], quantity=quantity, unit_price=price, description=description
        )
        for code, price, quantity, description in _delta(order)
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
    customer_id = ctx.result_of("upsert_customer_erp")["external_id"]
    erp = connector_for("erp")
    with connector_errors():
        found = erp.sales_order_find(reference=order.enterprise_id)
        record = found or erp.sales_order_create(
            reference=order.enterprise_id, customer_id=str(customer_id), currency=order.currency,
            lines=lines, order_date=timezone.localdate(), idempotency_key=ctx.key,
        )  # fmt: skip
    crosswalk_link(order, "erp", "sales_order", record.id)
    order_advance(
        order, OrderState.VALIDATED, services.order_submit_to_erp, f"ERP sales order {record.id}"
    )
    return Done(record.id, {"number": record.number, "found": found is not None})


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
    sales_order = ctx.result_of("create_erp_order")["external_id"]
    compensation = f"cancel ERP sales order {sales_order} for {order.enterprise_id}"
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


def apply_to_contract(ctx: StepContext) -> Done:
    order = step_order(ctx)
    contract = _contract(order)
    version = contract.versions.filter(order=order).first()
    if version is None:
        assert order.effective_date is not None
        try:
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
            StepDef("update_subscription", update_subscription, system="billing"),
            StepDef("apply_to_contract", apply_to_contract, has_effect=False),
        ],
        compensations=(CANCEL_ERP_ORDER,),
    )
)
