"""Quote to cash, step by step, in the order PRODUCT.md gives.

validate the quote → resolve the customer → map products → split recurring and one-time
lines → check tax status and legal entity → upsert the customer in ERP and billing →
create the ERP sales order → wait for financial acceptance → create the subscription
(never before the ERP accepted the order) → send one-time lines → activate the contract.
Invoices and payments are mirrored back by their events (orchestration.events.handlers).

Each handler runs outside any transaction: it reads the canonical records, calls the
system through its connector (finding an existing effect by reference before creating
one), then records the outcome through the services, which write the audited history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from core.errors import DATA_REFUSALS, Refused
from core.records import LineKind
from masterdata.identity import identity_resolve
from masterdata.models import Account, ExternalId
from masterdata.services import records as md_services
from orchestration.connectors.interfaces import Party, RemoteLine
from orchestration.connectors.registry import connector_for
from orchestration.workflows.compensations import CANCEL_ERP_ORDER
from orchestration.workflows.engine import (
    Done,
    StepContext,
    StepDef,
    StepInput,
    WorkflowDef,
    workflow_signal,
)
from orchestration.workflows.engine import workflow_register as _register
from orchestration.workflows.errors import StepFailed, StepRetryable
from orchestration.workflows.models import WorkflowRun
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
from q2c.models import Contract, ContractState, Order, OrderLine, OrderState

KIND = "quote_to_cash"
SUBSCRIPTION_ACTIVATED = "subscription.activated"


# --- steps ---------------------------------------------------------------------------------


def validate_quote(ctx: StepContext) -> Done:
    order = step_order(ctx)
    problems = []
    lines = order_lines(order)
    if not lines:
        problems.append("the quote has no lines")
    for line in lines:
        if line.quantity <= 0:
            problems.append(f"line {line.line_no}: quantity must be positive")
        if line.kind == LineKind.RECURRING and not (line.term_start and line.term_end):
            problems.append(f"line {line.line_no}: a recurring line needs its term dates")
        if line.kind == LineKind.RECURRING and not line.billing_period:
            problems.append(f"line {line.line_no}: a recurring line needs a billing period")
    if problems:
        raise StepFailed("; ".join(problems), category="validation", severity="medium",
                         error_class="QuoteInvalid")  # fmt: skip
    return Done(data={"lines": len(lines)})


def resolve_customer(ctx: StepContext) -> Done:
    order = step_order(ctx)
    if order.account is not None:
        return Done(order.account.enterprise_id, {"level": "already resolved"})
    snapshot: dict[str, Any] = dict(order.quote.customer_snapshot) if order.quote else {}
    address = snapshot.get("address") or {}
    resolution = identity_resolve(
        system="crm",
        external_id=str(snapshot.get("crm_id") or ""),
        legal_name=str(snapshot.get("name") or ""),
        country=str(snapshot.get("country") or ""),
        tax_id=str(snapshot.get("tax_id") or ""),
        domain=str(snapshot.get("domain") or ""),
        email=str(snapshot.get("email") or ""),
    )
    if resolution.status == "ambiguous":
        raise StepFailed(
            f"customer {snapshot.get('name')!r} matches several accounts by {resolution.level}: "
            f"{', '.join(resolution.candidates)}",
            category="master_data",
            severity="high",
            error_class="AmbiguousCustomer",
            candidates=resolution.candidates,
            evidence=resolution.evidence,
        )
    actor = system_actor()
    cpq_quote_id = order.quote.cpq_quote_id if order.quote else ""
    if resolution.status == "match":
        account = resolution.account
        assert account is not None
    else:
        try:
            account = md_services.account_create(
                legal_name=str(snapshot.get("name") or "").strip(),
                country=str(snapshot.get("country") or "").upper(),
                currency=str(snapshot.get("currency") or order.currency),
                legal_entity=order.legal_entity,
                domain=str(snapshot.get("domain") or ""),
                tax_id=str(snapshot.get("tax_id") or ""),
                address_line1=str(address.get("line1") or ""),
                city=str(address.get("city") or ""),
                postcode=str(address.get("postcode") or ""),
                email=str(snapshot.get("email") or ""),
                actor=actor,
                reason=f"new customer from CPQ quote {cpq_quote_id}",
            )
        except Refused as exc:  # the customer data, not the system
            if exc.kind not in DATA_REFUSALS:
                raise
            raise StepFailed(
                f"customer cannot be created: {exc.message}",
                category="master_data",
                error_class="CustomerInvalid",
            ) from exc
    crm_id = str(snapshot.get("crm_id") or "")
    if crm_id:
        crosswalk_link(account, "crm", "account", crm_id)
    services.order_assign_account(
        order=order, account=account, actor=actor,
        reason=f"customer resolved by {resolution.level or 'creation'}",
    )  # fmt: skip
    return Done(account.enterprise_id, {"level": resolution.level or "created"})


def map_products(ctx: StepContext) -> Done:
    order = step_order(ctx)
    # A product added to the catalog after the quote arrived (the fix behind a mapping
    # exception) is picked up on retry.
    services.order_lines_link_products(
        order=order, actor=system_actor(), reason="product now in the catalog"
    )
    mappings = product_mappings(order)
    missing = []
    for line in order_lines(order):
        if line.product_id is None:
            missing.append(
                f"line {line.line_no}: product {line.product_code} is not in the catalog"
            )
            continue
        if (line.line_no, "erp") not in mappings:
            missing.append(f"line {line.line_no}: {line.product_code} has no ERP item")
        if line.kind == LineKind.RECURRING and (line.line_no, "billing") not in mappings:
            missing.append(f"line {line.line_no}: {line.product_code} has no billing plan")
    if missing:
        raise StepFailed("; ".join(missing), category="mapping", severity="high",
                         error_class="UnmappedProduct")  # fmt: skip
    return Done(data={"mapped": len(mappings)})


def split_lines(ctx: StepContext) -> Done:
    order = step_order(ctx)
    split: dict[str, list[int]] = {kind: [] for kind in LineKind.values}
    for line in order_lines(order):
        split[line.kind].append(line.line_no)
    return Done(data=split)


def check_tax_and_entity(ctx: StepContext) -> Done:
    order = step_order(ctx)
    entity = order.legal_entity
    gaps = [name for name in ("erp_subsidiary", "tax_registration") if not getattr(entity, name)]
    if gaps:
        raise StepFailed(
            f"legal entity {entity.code} has no {' and no '.join(gaps)}",
            category="tax", severity="high", error_class="LegalEntityIncomplete",
        )  # fmt: skip
    account = order.account
    assert account is not None
    result: dict[str, Any] = {"address": "not given"}
    if account.address_line1 or account.postcode:
        with connector_errors(category="tax"):
            checked = connector_for("tax").address_validate(
                line1=account.address_line1, city=account.city, postcode=account.postcode,
                country=account.country, correlation_id=order.enterprise_id,
            )  # fmt: skip
        result = {"address": checked.status or "valid"}
    order_advance(
        order, OrderState.RECEIVED, services.order_validate, "quote validated, customer resolved"
    )
    return Done(data=result)


def _party(account: Account, order: Order) -> Party:
    return Party(
        reference=account.enterprise_id, name=account.legal_name, country=account.country,
        currency=account.currency, email=account.email, tax_id=account.tax_id,
        address_line1=account.address_line1, city=account.city, postcode=account.postcode,
        erp_subsidiary=order.legal_entity.erp_subsidiary, crm_id=_crm_id(account),
    )  # fmt: skip


def _crm_id(account: Account) -> str:
    link = (
        ExternalId.objects.filter(
            system="crm", object_type="account", enterprise_id=account.enterprise_id
        )
        .order_by("pk")
        .first()
    )
    return link.external_id if link is not None else ""


def upsert_customer_erp(ctx: StepContext) -> Done:
    order = step_order(ctx)
    account = order.account
    assert account is not None
    erp = connector_for("erp")
    with connector_errors():
        found = erp.customer_find(reference=account.enterprise_id)
        record = found or erp.customer_create(party=_party(account, order), idempotency_key=ctx.key)
    crosswalk_link(account, "erp", "customer", record.id)
    return Done(record.id, {"found": found is not None})


def upsert_customer_billing(ctx: StepContext) -> Done:
    order = step_order(ctx)
    account = order.account
    assert account is not None
    billing = connector_for("billing")
    with connector_errors():
        found = billing.customer_find(reference=account.enterprise_id)
        record = found or billing.customer_create(
            party=_party(account, order), idempotency_key=ctx.key
        )
    crosswalk_link(account, "billing", "customer", record.id)
    return Done(record.id, {"found": found is not None})


def create_erp_order(ctx: StepContext) -> Done:
    order = step_order(ctx)
    mappings = product_mappings(order)
    customer_id = ctx.result_of("upsert_customer_erp")["external_id"]
    lines = [
        RemoteLine(
            product_ref=mappings[(line.line_no, "erp")].external_id,
            quantity=line.quantity,
            unit_price=net_unit_price(line),
            description=line.description,
        )
        for line in order_lines(order)
    ]
    erp = connector_for("erp")
    with connector_errors():
        found = erp.sales_order_find(reference=order.enterprise_id)
        record = found or erp.sales_order_create(
            reference=order.enterprise_id, customer_id=str(customer_id), currency=order.currency,
            lines=lines, order_date=timezone.localdate(), idempotency_key=ctx.key,
            subsidiary=order.legal_entity.erp_subsidiary,
        )  # fmt: skip
    crosswalk_link(order, "erp", "sales_order", record.id)
    order_advance(
        order, OrderState.VALIDATED, services.order_submit_to_erp, f"ERP sales order {record.id}"
    )
    return Done(record.id, {"number": record.number, "found": found is not None})


def await_financial_acceptance(ctx: StepContext) -> Done:
    order = step_order(ctx)
    order_advance(
        order, OrderState.SUBMITTED_TO_ERP, services.order_accept, "ERP accepted the order"
    )
    return Done(data=dict(ctx.signal or {}))


def create_subscription(ctx: StepContext) -> Done:
    order = step_order(ctx)
    if order.state == OrderState.SUBMITTED_TO_ERP:  # never bill before financial acceptance
        raise StepRetryable("the ERP has not accepted the order yet", retry_after=5)
    recurring = [line for line in order_lines(order) if line.kind == LineKind.RECURRING]
    if not recurring:
        # Nothing for billing to activate: activate_contract must not wait for it.
        workflow_signal(
            run=ctx.run, event_type=SUBSCRIPTION_ACTIVATED, payload={"skipped": "no subscription"}
        )
        order_advance(
            order, OrderState.ACCEPTED, services.order_start_provisioning, "no subscription"
        )
        return Done(data={"skipped": "no recurring lines"})
    mappings = product_mappings(order)
    billing = connector_for("billing")
    customer_id = str(ctx.result_of("upsert_customer_billing")["external_id"])
    sales_order = ctx.result_of("create_erp_order")["external_id"]
    compensation = f"cancel ERP sales order {sales_order} for {order.enterprise_id}"
    contract = _contract_for(order, recurring)
    # Billing bills one interval per subscription: one subscription per billing period,
    # the first named by the order itself, the others by the order and their period.
    groups: dict[str, list[OrderLine]] = {}
    for line in recurring:
        groups.setdefault(line.billing_period, []).append(line)
    records = []
    with connector_errors(compensation=compensation):
        for index, (period, lines) in enumerate(groups.items()):
            reference = order.enterprise_id if index == 0 else f"{order.enterprise_id}:{period}"
            key = ctx.key if index == 0 else f"{ctx.key}:{period}"
            found = billing.subscription_find(reference=reference)
            if found is None:
                items = []
                for line in lines:
                    mapping = mappings[(line.line_no, "billing")]
                    price = line_price_ensure(
                        billing, order, line, mapping=mapping, step_key=ctx.key
                    )
                    items.append((price.id, line.quantity))
                found = billing.subscription_create(
                    reference=reference,
                    customer_id=customer_id,
                    items=items,
                    idempotency_key=key,
                    contract_reference=contract.enterprise_id,
                )
            records.append(found)
    for record in records:
        crosswalk_link(contract, "billing", "subscription", record.id)
    names = ", ".join(record.id for record in records)
    order_advance(
        order, OrderState.ACCEPTED, services.order_start_provisioning, f"subscriptions {names}"
    )
    return Done(
        records[0].id,
        {"contract": contract.enterprise_id, "subscriptions": [record.id for record in records]},
    )


def _contract_for(order: Order, recurring: list[OrderLine]) -> Contract:
    """The order's contract (made once): its recurring lines, and its usage lines, which
    usage records are rated against; the term is the recurring lines'."""
    existing = order.contracts.order_by("pk").first()
    if existing is not None:
        return existing
    assert order.account is not None
    starts = [line.term_start for line in recurring if line.term_start]
    ends = [line.term_end for line in recurring if line.term_end]
    usage = [line for line in order_lines(order) if line.kind == LineKind.USAGE]
    return services.contract_create(
        account=order.account, legal_entity=order.legal_entity, currency=order.currency,
        start_date=min(starts), end_date=max(ends), order=order,
        lines=[
            services.LineInput(
                product_code=line.product_code, product=line.product, kind=line.kind,
                quantity=line.quantity, unit_price=line.unit_price, description=line.description,
                discount_percent=line.discount_percent, billing_period=line.billing_period,
                term_start=line.term_start, term_end=line.term_end,
            )
            for line in [*recurring, *usage]
        ],
        actor=system_actor(), reason=f"subscription contract for {order.enterprise_id}",
    )  # fmt: skip


def send_one_time_lines(ctx: StepContext) -> Done:
    order = step_order(ctx)
    one_time = [line for line in order_lines(order) if line.kind == LineKind.ONE_TIME]
    if not one_time:
        return Done(data={"skipped": "no one-time lines"})
    mappings = product_mappings(order)
    erp = connector_for("erp")
    reference = f"{order.enterprise_id}-OT"
    with connector_errors():
        found = erp.invoice_find(reference=reference)
        record = found or erp.invoice_create(
            reference=reference,
            customer_id=str(ctx.result_of("upsert_customer_erp")["external_id"]),
            sales_order_id=str(ctx.result_of("create_erp_order")["external_id"]),
            currency=order.currency,
            lines=[
                RemoteLine(
                    product_ref=mappings[(line.line_no, "erp")].external_id,
                    quantity=line.quantity,
                    unit_price=net_unit_price(line),
                    description=line.description,
                )
                for line in one_time
            ],
            idempotency_key=ctx.key,
        )
    return Done(record.id, {"number": record.number, "found": found is not None})


def activate_contract(ctx: StepContext) -> Done:
    """Runs once billing said the subscription is active (``subscription.activated``)."""
    order = step_order(ctx)
    contract = order.contracts.order_by("pk").first()
    if contract is not None and contract.state == ContractState.PENDING_ACTIVATION:
        services.contract_activate(
            contract=contract, actor=system_actor(), reason="financially accepted and billed"
        )
    order_advance(order, OrderState.PROVISIONING, services.order_activate, "contract active")
    return Done(contract.enterprise_id if contract else "", {})


# --- what a replay may correct ------------------------------------------------------------
#
# A replay of a failed step may carry a corrected payload only for the steps below; each
# declares the data it works on (StepInput): how to read it, how to refuse a correction that
# does not fit, and how to write an approved one through the audited services before the step
# runs again. validate_quote declares none: its input is the order lines, and Tandem has no
# audited service that rewrites lines (their totals, the quote they came from); a bad line is
# fixed in CPQ and the corrected quote arrives as a new event. map_products reads the catalog
# and its mappings, fixed by a data steward, then replayed unchanged.

# The customer as CPQ sends it (the quote.approved event's ``account``), with its limits.
SNAPSHOT_FIELDS: dict[str, int] = {
    "name": 255, "country": 2, "currency": 3, "tax_id": 50, "domain": 255, "email": 254,
    "crm_id": 64,
}  # fmt: skip
SNAPSHOT_ADDRESS_FIELDS: dict[str, int] = {
    "line1": 255, "line2": 255, "city": 100, "postcode": 20, "region": 100, "country": 2,
}  # fmt: skip
ADDRESS_FIELDS: dict[str, int] = {"line1": 255, "city": 100, "postcode": 20, "country": 2}


def _run_order(run: WorkflowRun) -> Order:
    return Order.objects.select_related("account", "quote").get(enterprise_id=run.subject_id)


def _strings(payload: dict[str, Any], fields: dict[str, int], where: str) -> dict[str, str]:
    """The payload's fields as trimmed strings, refusing unknown keys, non-strings, overlong
    values and a country or currency that is not an ISO code."""
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise Refused(
            f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            f" (allowed: {', '.join(fields)})",
            kind=Refused.Kind.INVALID,
        )
    out: dict[str, str] = {}
    for name, value in payload.items():
        if not isinstance(value, str):
            raise Refused(
                f"{where}: {name} must be a string, not {type(value).__name__}",
                kind=Refused.Kind.INVALID,
            )
        value = value.strip()
        if name == "country" and value and not (len(value) == 2 and value.isalpha()):
            raise Refused(
                f"{where}: country must be a 2-letter ISO code, not {value!r}",
                kind=Refused.Kind.INVALID,
            )
        if name == "currency" and value and not (len(value) == 3 and value.isalpha()):
            raise Refused(
                f"{where}: currency must be a 3-letter ISO code, not {value!r}",
                kind=Refused.Kind.INVALID,
            )
        if len(value) > fields[name]:
            raise Refused(
                f"{where}: {name} is longer than {fields[name]} characters",
                kind=Refused.Kind.INVALID,
            )
        out[name] = value.upper() if name in ("country", "currency") else value
    return out


def customer_snapshot_read(run: WorkflowRun) -> dict[str, Any]:
    order = _run_order(run)
    return dict(order.quote.customer_snapshot) if order.quote else {}


def customer_snapshot_check(run: WorkflowRun, payload: dict[str, Any]) -> dict[str, Any]:
    """A whole customer snapshot: name, country and currency required; email well formed."""
    order = _run_order(run)
    if order.quote is None:
        raise Refused(
            f"{order.enterprise_id} has no quote whose customer could be corrected",
            kind=Refused.Kind.STATE,
        )
    if order.account_id is not None:
        raise Refused(
            f"{order.enterprise_id} already has its customer {order.account}",
            kind=Refused.Kind.STATE,
        )
    fields = {key: value for key, value in payload.items() if key != "address"}
    checked: dict[str, Any] = _strings(fields, SNAPSHOT_FIELDS, "customer")
    missing = [name for name in ("name", "country", "currency") if not checked.get(name)]
    if missing:
        raise Refused(f"customer: {', '.join(missing)} required", kind=Refused.Kind.INVALID)
    if checked.get("email"):
        try:
            validate_email(checked["email"])
        except ValidationError:
            raise Refused(
                f"customer: email {checked['email']!r} is not valid", kind=Refused.Kind.INVALID
            ) from None
    if "address" in payload:
        address = payload["address"]
        if not isinstance(address, dict):
            raise Refused("customer: address must be an object", kind=Refused.Kind.INVALID)
        checked["address"] = _strings(address, SNAPSHOT_ADDRESS_FIELDS, "customer address")
    return checked


@contextlib.contextmanager
def correction_refusals(*, what: str, category: str) -> Iterator[None]:
    """A correction the records refuse stops the step for a person, with their reasons."""
    try:
        yield
    except Refused as exc:
        if exc.kind not in DATA_REFUSALS:
            raise
        raise StepFailed(
            f"the corrected {what} cannot be stored: {exc.message}",
            category=category, error_class="CorrectionRefused",
        ) from exc  # fmt: skip


def customer_snapshot_apply(ctx: StepContext, payload: dict[str, Any]) -> None:
    """Store the corrected snapshot on the quote (audited); resolve_customer then reads it."""
    order = step_order(ctx)
    if order.account_id is not None:
        return  # resolved already (a redelivered message): the snapshot is no longer read
    assert order.quote is not None  # checked when the replay was requested
    with correction_refusals(what="customer", category="master_data"):
        services.quote_correct_customer_snapshot(
            quote=order.quote, snapshot=payload, actor=system_actor(),
            reason=f"{ctx.correction_reason}: customer corrected",
        )  # fmt: skip


def account_address_read(run: WorkflowRun) -> dict[str, Any]:
    account = _run_order(run).account
    if account is None:
        return {}
    return {
        "line1": account.address_line1, "city": account.city, "postcode": account.postcode,
        "country": account.country,
    }  # fmt: skip


def account_address_check(run: WorkflowRun, payload: dict[str, Any]) -> dict[str, Any]:
    """The account's whole address: line1, city, postcode and a 2-letter country."""
    order = _run_order(run)
    if order.account is None:
        raise Refused(
            f"{order.enterprise_id} has no customer whose address could be corrected",
            kind=Refused.Kind.STATE,
        )
    checked = _strings(payload, ADDRESS_FIELDS, "address")
    missing = [name for name in ADDRESS_FIELDS if name not in checked]
    if missing:
        raise Refused(f"address: {', '.join(missing)} required", kind=Refused.Kind.INVALID)
    if not checked["country"]:
        raise Refused("address: country required", kind=Refused.Kind.INVALID)
    return checked


def account_address_apply(ctx: StepContext, payload: dict[str, Any]) -> None:
    """Correct the account's address (audited); check_tax_and_entity then validates it."""
    order = step_order(ctx)
    assert order.account is not None  # checked when the replay was requested
    with correction_refusals(what="address", category="tax"):
        md_services.account_update_address(
            account=order.account, address_line1=payload["line1"], city=payload["city"],
            postcode=payload["postcode"], country=payload["country"], actor=system_actor(),
            reason=f"{ctx.correction_reason}: address corrected",
        )  # fmt: skip


CUSTOMER_SNAPSHOT = StepInput(
    describe="the quote's customer snapshot (the customer as CPQ sent it)",
    read=customer_snapshot_read,
    check=customer_snapshot_check,
    apply=customer_snapshot_apply,
)
ACCOUNT_ADDRESS = StepInput(
    describe="the customer account's address, validated with the tax engine",
    read=account_address_read,
    check=account_address_check,
    apply=account_address_apply,
)
# The one place that says which steps take a corrected payload.
STEP_INPUTS: dict[str, StepInput] = {
    "resolve_customer": CUSTOMER_SNAPSHOT,
    "check_tax_and_entity": ACCOUNT_ADDRESS,
}


QUOTE_TO_CASH = _register(
    WorkflowDef(
        kind=KIND,
        steps=[
            StepDef("validate_quote", validate_quote, has_effect=False),
            StepDef(
                "resolve_customer",
                resolve_customer,
                has_effect=False,
                payload=STEP_INPUTS["resolve_customer"],
            ),
            StepDef("map_products", map_products, has_effect=False),
            StepDef("split_lines", split_lines, has_effect=False),
            StepDef(
                "check_tax_and_entity",
                check_tax_and_entity,
                system="tax",
                has_effect=False,
                payload=STEP_INPUTS["check_tax_and_entity"],
            ),
            StepDef("upsert_customer_erp", upsert_customer_erp, system="erp"),
            StepDef("upsert_customer_billing", upsert_customer_billing, system="billing"),
            StepDef("create_erp_order", create_erp_order, system="erp"),
            StepDef(
                "await_financial_acceptance",
                await_financial_acceptance,
                waits_for="order.accepted",
                has_effect=False,
            ),
            StepDef("create_subscription", create_subscription, system="billing"),
            StepDef("send_one_time_lines", send_one_time_lines, system="erp"),
            StepDef(
                "activate_contract",
                activate_contract,
                waits_for=SUBSCRIPTION_ACTIVATED,
                has_effect=False,
            ),
        ],
        compensations=(CANCEL_ERP_ORDER,),
    )
)
