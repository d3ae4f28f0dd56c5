"""Renewals and cancellations of a contract, each a workflow on its contract version.

A run's subject is the contract (``CTR-…``) and its subject version the contract version's
number, so step keys (``CTR-000042:v3:create_erp_order``) are stable across redeliveries,
retries and replays. Every run follows the same order as quote to cash: the ERP first (a
sale for a renewal's term, a return for a cancellation's credit), billing only after the
ERP accepted, then the version takes effect on its date (``await_effective_date`` waits for
the schedule's ``contract.version_due`` signal). Every remote create is looked up by its
reference first, so a lost answer never makes a second record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any, cast

from django.db import transaction
from django.utils import timezone

from core.audit import Actor
from core.errors import DATA_REFUSALS, Refused
from masterdata.models import ExternalId, ProductMapping
from orchestration.connectors.billing_common import AMENDMENT_KEY
from orchestration.connectors.interfaces import BillingApi, RemoteLine, RemoteRecord
from orchestration.connectors.registry import connector_for
from orchestration.workflows.engine import (
    Done,
    StepContext,
    StepDef,
    WorkflowDef,
    workflow_signal,
    workflow_start,
)
from orchestration.workflows.engine import workflow_register as _register
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import WorkflowRun
from orchestration.workflows.steps import connector_errors, system_actor
from q2c import lifecycle, services
from q2c.models import (
    Contract,
    ContractLine,
    ContractVersion,
    VersionCause,
    VersionKind,
    VersionState,
)

logger = logging.getLogger(__name__)

VERSION_DUE = "contract.version_due"
RENEWAL = "renewal"
CANCELLATION = "cancellation"


# --- which run carries a version, and telling it its date has come ----------------------------


def version_reference(version: ContractVersion) -> str:
    """The reference a version's records carry downstream: ``CTR-000042:v3``."""
    return f"{version.contract.enterprise_id}:v{version.number}"


def run_for_version(version: ContractVersion) -> WorkflowRun | None:
    """The workflow run that carries ``version`` (its amendment order's, or the contract's
    run of that version number)."""
    if version.order is not None:
        return WorkflowRun.objects.filter(
            kind="amendment", subject_id=version.order.enterprise_id
        ).first()
    return WorkflowRun.objects.filter(
        subject_id=version.contract.enterprise_id, subject_version=version.number
    ).first()


def versions_signal_due(*, today: dt.date | None = None, contract: Contract | None = None) -> int:
    """Tell each run whose version's date has come (and whose base is in effect) that it may
    go on; safe to repeat. Returns how many runs heard it for the first time."""
    today = today or timezone.localdate()
    told = 0
    for version in lifecycle.versions_due(today=today, contract=contract):
        run = run_for_version(version)
        if run is None:
            continue
        payload = {"version": version.number, "due": str(today)}
        if workflow_signal(run=run, event_type=VERSION_DUE, payload=payload):
            told += 1
    return told


def _versions_signal_due_after_commit(contract: Contract) -> None:
    """After a version took effect, the next one built on it may be due at once."""
    transaction.on_commit(lambda: versions_signal_due(contract=contract))


def contracts_auto_renew(*, today: dt.date | None = None, lead_days: int = 0) -> int:
    """Record the renewal of every auto-renewing contract at its term end and start its
    workflow (once per term). Returns how many renewals were started."""
    today = today or timezone.localdate()
    actor = Actor.system("worker")
    started = 0
    for contract in lifecycle.contracts_renewal_due(today=today, lead_days=lead_days):
        try:
            with transaction.atomic():
                recorded = lifecycle.contract_auto_renew(contract=contract, actor=actor)
                if recorded.created and not recorded.parked:
                    change_workflow_start(version=recorded.version, actor=actor)
                    started += 1
        except Refused as exc:
            logger.info("no automatic renewal of %s: %s", contract.enterprise_id, exc.message)
    return started


def change_workflow_start(*, version: ContractVersion, actor: Actor) -> WorkflowRun:
    """Start the renewal or cancellation workflow of ``version`` (once), and tell it at once
    when its date has already come."""
    kinds: dict[str, str] = {VersionKind.RENEWAL: RENEWAL, VersionKind.CANCELLATION: CANCELLATION}
    kind = kinds[version.kind]
    run = workflow_start(
        kind=kind,
        subject_id=version.contract.enterprise_id,
        subject_version=version.number,
        actor=actor,
    )
    contract = version.contract
    transaction.on_commit(lambda: versions_signal_due(contract=contract))
    return run


# --- shared step helpers ---------------------------------------------------------------------


def step_version(ctx: StepContext) -> ContractVersion:
    """The contract version the run is about."""
    return ContractVersion.objects.select_related(
        "contract", "contract__account", "base_version"
    ).get(contract__enterprise_id=ctx.run.subject_id, number=ctx.run.subject_version)


def _live(version: ContractVersion) -> None:
    if version.state == VersionState.PARKED:
        raise StepFailed(
            f"{version} is parked: {version.parked_reason}",
            category="validation", error_class="StaleContractChange",
        )  # fmt: skip


def erp_customer_id(contract: Contract) -> str:
    found = (
        ExternalId.objects.filter(
            system="erp", object_type="customer", enterprise_id=contract.account.enterprise_id
        )
        .order_by("pk")
        .values_list("external_id", flat=True)
        .first()
    )
    if found is None:
        raise StepFailed(
            f"{contract.account.enterprise_id} has no ERP customer",
            category="master_data", error_class="CustomerMissing",
        )  # fmt: skip
    return found


def billing_subscription_ids(contract: Contract) -> list[str]:
    """The contract's subscriptions, one per billing period, in the order they were made
    (the order of the periods on its lines)."""
    found = list(
        ExternalId.objects.filter(
            system="billing", object_type="subscription", enterprise_id=contract.enterprise_id
        )
        .order_by("pk")
        .values_list("external_id", flat=True)
    )
    if not found:
        raise StepFailed(
            f"{contract.enterprise_id} has no billing subscription",
            category="validation", error_class="SubscriptionMissing",
        )  # fmt: skip
    return found


def lines_by_period(lines: list[ContractLine]) -> list[list[ContractLine]]:
    """Recurring lines grouped by billing period, in line order (one subscription each)."""
    groups: dict[str, list[ContractLine]] = {}
    for line in lines:
        if line.kind == "recurring":
            groups.setdefault(line.billing_period, []).append(line)
    return list(groups.values())


def mapping_of(line: ContractLine, system: str) -> ProductMapping:
    mapping = (
        line.product.mappings.filter(system=system).first() if line.product is not None else None
    )
    if mapping is None:
        raise StepFailed(
            f"{line.product_code} has no {system} mapping",
            category="mapping", error_class="MappingMissing",
        )  # fmt: skip
    return mapping


def billing_items(
    billing: BillingApi, contract: Contract, lines: list[ContractLine], *, key: str
) -> list[tuple[str, int]]:
    """(billing price id, quantity) of each recurring line, the price ensured at its net
    unit price in the contract's currency and period."""
    items = []
    for line in lines:
        if line.kind != "recurring":
            continue
        mapping = mapping_of(line, "billing")
        price = lifecycle.net_price(line)
        record = billing.price_ensure(
            lookup_key=f"{mapping.external_id}:{contract.currency}:{price}:{line.billing_period}",
            product_name=line.description or line.product_code,
            currency=contract.currency,
            unit_amount=price,
            interval=line.billing_period,
            idempotency_key=f"{key}:price:{line.line_no}",
        )
        items.append((record.id, int(line.quantity)))
    return items


def subscription_set(
    billing: BillingApi, subscription_id: str, items: list[tuple[str, int]], *, reference: str,
    key: str,
) -> tuple[RemoteRecord, bool]:  # fmt: skip
    """Make the subscription carry exactly ``items``, once: one that carries ``reference``
    or already has those items is not updated again. Returns it and whether it was found so."""
    current = billing.subscription_get(subscription_id=subscription_id)
    prices = cast(list[str], current.data["price_ids"])
    has = sorted(zip(prices, cast(list[int], current.data["quantities"]), strict=True))
    done = current.data.get("amendment_reference") == reference or has == sorted(items)
    if done:
        return current, True
    updated = billing.subscription_update(
        subscription_id=subscription_id,
        items=[(price_id, Decimal(quantity)) for price_id, quantity in items],
        idempotency_key=key,
        metadata={AMENDMENT_KEY: reference},
    )
    return updated, False


def await_effective_date(ctx: StepContext) -> Done:
    """Waits for ``contract.version_due``: the schedule sends it on the version's date once
    the version it amends is in effect."""
    return Done(data=dict(ctx.signal or {}))


def await_financial_acceptance(ctx: StepContext) -> Done:
    """Waits for the ERP's ``order.accepted`` of the run's sale."""
    return Done(data=dict(ctx.signal or {}))


def apply_version(ctx: StepContext) -> Done:
    version = step_version(ctx)
    try:
        applied = lifecycle.contract_version_apply(
            version=version,
            actor=system_actor(),
            reason=f"{version.kind} {version_reference(version)} in effect",
        )
    except Refused as exc:
        if exc.kind not in DATA_REFUSALS and exc.kind != Refused.Kind.STATE:
            raise
        raise StepFailed(
            exc.message, category="validation", error_class="ContractChangeInvalid"
        ) from exc
    _versions_signal_due_after_commit(version.contract)
    return Done(version.contract.enterprise_id, {"version": applied.number, "state": applied.state})


# --- renewal -------------------------------------------------------------------------------------


def check_renewal(ctx: StepContext) -> Done:
    version = step_version(ctx)
    _live(version)
    if version.kind != VersionKind.RENEWAL:
        raise StepFailed(f"{version} is not a renewal", category="validation",
                         error_class="ContractChangeInvalid")  # fmt: skip
    return Done(data={"term_end": str(version.term_end)})


def create_renewal_sale(ctx: StepContext) -> Done:
    """The renewal term as an ERP sale, referenced by the version (found before created)."""
    version = step_version(ctx)
    contract = version.contract
    reference = version_reference(version)
    lines = [
        RemoteLine(
            product_ref=mapping_of(line, "erp").external_id, quantity=line.quantity,
            unit_price=lifecycle.net_price(line), description=line.description,
        )
        for line in version.lines.select_related("product").order_by("line_no")
    ]  # fmt: skip
    customer_id = erp_customer_id(contract)
    erp = connector_for("erp")
    with connector_errors():
        found = erp.sales_order_find(reference=reference)
        record = found or erp.sales_order_create(
            reference=reference, customer_id=customer_id, currency=contract.currency,
            lines=lines, order_date=timezone.localdate(), idempotency_key=ctx.key,
            subsidiary=contract.legal_entity.erp_subsidiary,  # the contract's company books it
        )  # fmt: skip
    return Done(record.id, {"number": record.number, "found": found is not None})


def renew_subscription(ctx: StepContext) -> Done:
    version = step_version(ctx)
    contract = version.contract
    subscription_ids = billing_subscription_ids(contract)
    groups = lines_by_period(list(version.lines.select_related("product").order_by("line_no")))
    if len(groups) != len(subscription_ids):
        raise StepFailed(
            f"{contract.enterprise_id} has {len(subscription_ids)} subscriptions for "
            f"{len(groups)} billing periods", category="validation",
            error_class="ContractChangeInvalid",
        )  # fmt: skip
    billing = connector_for("billing")
    found = []
    with connector_errors():
        for index, (subscription_id, lines) in enumerate(
            zip(subscription_ids, groups, strict=True)
        ):
            key = ctx.key if index == 0 else f"{ctx.key}:{index}"
            items = billing_items(billing, contract, lines, key=key)
            _, was = subscription_set(
                billing, subscription_id, items, reference=version_reference(version), key=key
            )
            found.append(was)
    return Done(subscription_ids[0], {"found": found, "subscriptions": subscription_ids})


RENEWAL_WORKFLOW = _register(
    WorkflowDef(
        kind=RENEWAL,
        steps=[
            StepDef("check_renewal", check_renewal, has_effect=False),
            StepDef("create_erp_order", create_renewal_sale, system="erp"),
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
            StepDef("update_subscription", renew_subscription, system="billing"),
            StepDef("apply_to_contract", apply_version, has_effect=False),
        ],
    )
)


# --- cancellation ----------------------------------------------------------------------------


def check_cancellation(ctx: StepContext) -> Done:
    version = step_version(ctx)
    _live(version)
    if version.kind != VersionKind.CANCELLATION:
        raise StepFailed(f"{version} is not a cancellation", category="validation",
                         error_class="ContractChangeInvalid")  # fmt: skip
    return Done(data={"mode": version.changes.get("mode", ""), "on": str(version.effective_date)})


def create_erp_return(ctx: StepContext) -> Done:
    """The credit for the unused period as an ERP return (positive quantities, never a
    negative sales line), referenced by the version; nothing when there is no credit."""
    version = step_version(ctx)
    contract = version.contract
    credit = cast(list[dict[str, Any]], version.changes.get("credit") or [])
    if not credit:
        return Done(data={"skipped": "nothing to credit"})
    base_lines = {
        line.product_code: line
        for line in version.base_version.lines.select_related("product")  # type: ignore[union-attr]
    }
    lines = [
        RemoteLine(
            product_ref=mapping_of(base_lines[row["product_code"]], "erp").external_id,
            quantity=Decimal(row["quantity"]), unit_price=Decimal(row["unit_credit"]),
            description=f"Unused period: {row['description'] or row['product_code']}",
        )
        for row in credit
    ]  # fmt: skip
    reference = version_reference(version)
    customer_id = erp_customer_id(contract)
    erp = connector_for("erp")
    with connector_errors():
        found = erp.return_find(reference=reference)
        record = found or erp.return_create(
            reference=reference, customer_id=customer_id, currency=contract.currency,
            lines=lines, order_date=timezone.localdate(), idempotency_key=ctx.key,
        )  # fmt: skip
    return Done(record.id, {"number": record.number, "found": found is not None})


def cancel_subscription(ctx: StepContext) -> Done:
    version = step_version(ctx)
    subscription_ids = billing_subscription_ids(version.contract)
    prorate = version.changes.get("mode") == lifecycle.CANCEL_NOW
    # At term end the last period runs out in billing and nothing more is billed; now, the
    # subscription ends today with the unused time prorated.
    at_period_end = not prorate
    billing = connector_for("billing")
    found = []
    with connector_errors():
        for index, subscription_id in enumerate(subscription_ids):
            current = billing.subscription_get(subscription_id=subscription_id)
            done = current.status == "canceled" or (
                at_period_end and bool(current.data.get("cancel_at_period_end"))
            )
            found.append(done)
            if not done:
                billing.subscription_cancel(
                    subscription_id=subscription_id,
                    idempotency_key=ctx.key if index == 0 else f"{ctx.key}:{index}",
                    prorate=prorate,
                    at_period_end=at_period_end,
                )
    return Done(
        subscription_ids[0],
        {"found": found, "prorate": prorate, "at_period_end": at_period_end,
         "subscriptions": subscription_ids},
    )  # fmt: skip


def record_credit_note(ctx: StepContext) -> Done:
    version = step_version(ctx)
    total = Decimal(str(version.changes.get("credit_total") or "0"))
    if total <= 0:
        return Done(data={"skipped": "nothing to credit"})
    note = lifecycle.credit_note_for_version(
        version=version, amount=total, actor=system_actor(),
        reason=f"unused period credited on cancellation {version_reference(version)}",
    )  # fmt: skip
    return Done(note.enterprise_id, {"amount": str(note.amount), "currency": note.currency})


CANCELLATION_WORKFLOW = _register(
    WorkflowDef(
        kind=CANCELLATION,
        steps=[
            StepDef("check_cancellation", check_cancellation, has_effect=False),
            StepDef("create_erp_return", create_erp_return, system="erp"),
            StepDef(
                "await_effective_date",
                await_effective_date,
                waits_for=VERSION_DUE,
                has_effect=False,
            ),
            StepDef("cancel_subscription", cancel_subscription, system="billing"),
            StepDef("record_credit_note", record_credit_note),
            StepDef("apply_to_contract", apply_version, has_effect=False),
        ],
    )
)


# --- operator changes from the console: a dry run, then the change ----------------------------

RENEW = "renew"
CANCEL_NOW = "cancel_now"
CANCEL_AT_TERM_END = "cancel_term_end"
CHANGE_QUANTITY = "change_quantity"
ACTIONS = {
    RENEW: "Renew for another term",
    CANCEL_NOW: "Cancel now, crediting the unused period",
    CANCEL_AT_TERM_END: "Cancel at term end",
    CHANGE_QUANTITY: "Change a quantity",
}


def _payload_date(payload: dict[str, Any], name: str = "effective_date") -> dt.date:
    raw = str(payload.get(name) or "").strip()
    if not raw:
        return timezone.localdate()
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise Refused(
            f"{name} is not a date (YYYY-MM-DD): {raw!r}", kind=Refused.Kind.INVALID
        ) from None


def _current(contract: Contract) -> ContractVersion:
    version = services.contract_active_version(contract=contract)
    if version is None:
        raise Refused(f"{contract.enterprise_id} has no version in effect", kind=Refused.Kind.STATE)
    return version


def _quantity_lines(
    contract: Contract, payload: dict[str, Any], on: dt.date
) -> tuple[list[lifecycle.LineInput], Decimal, Decimal]:
    """The contract's lines with one product's quantity changed: (lines, from, to)."""
    code = str(payload.get("product_code") or "")
    try:
        wanted = Decimal(str(payload.get("quantity") or ""))
    except ArithmeticError:
        raise Refused("the quantity is not a number", kind=Refused.Kind.INVALID) from None
    if not wanted.is_finite() or wanted < 1 or wanted != wanted.to_integral_value():
        raise Refused("the quantity is a whole number of at least 1", kind=Refused.Kind.INVALID)
    lines = lifecycle.line_inputs(_current(contract))
    match = [line for line in lines if line.product_code == code]
    if not match:
        raise Refused(
            f"{contract.enterprise_id} has no line of {code!r}", kind=Refused.Kind.INVALID
        )
    before = match[0].quantity
    if before == wanted:
        raise Refused("the quantity is unchanged", kind=Refused.Kind.INVALID)
    changed = [
        dataclasses.replace(
            line, quantity=wanted if line.product_code == code else line.quantity,
            term_start=on, term_end=contract.end_date,
        )
        for line in lines
    ]  # fmt: skip
    return changed, before, wanted


def _sold(line: lifecycle.LineInput) -> str:
    return f"{line.quantity.normalize():f} x {line.product_code} at {lifecycle.net_price(line)}"


def _credited(credit: lifecycle.CreditLine) -> str:
    return f"{credit.quantity.normalize():f} x {credit.product_code} at {credit.unit_credit}"


def contract_change_preview(
    *, contract: Contract, action: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """What each system would receive for ``action`` (a dry run: reads only). Refuses what
    the change itself would refuse (an unknown action, a bad date or quantity)."""
    if action not in ACTIONS:
        raise Refused(f"unknown contract action {action!r}", kind=Refused.Kind.INVALID)
    if contract.state != "active":
        raise Refused(
            f"{contract.enterprise_id} is {contract.get_state_display().lower()}; only an active "
            "contract changes",
            kind=Refused.Kind.STATE,
        )
    current = _current(contract)
    ref = f"{contract.enterprise_id}:v{(contract.versions.count() + 1)}"
    preview: dict[str, Any] = {"action": action, "label": ACTIONS[action], "credit_total": "0.00"}
    if action == RENEW:
        lines = lifecycle.renewal_lines(contract, current)
        preview |= {
            "effective_date": str(contract.end_date + dt.timedelta(days=1)),
            "erp": f"sales order {ref}: " + ", ".join(_sold(line) for line in lines),
            "billing": "subscription moved to the renewal prices on the new term's first day",
            "tandem": f"renewal version to {lines[0].term_end if lines else contract.end_date}",
        }  # fmt: skip
        return preview
    if action in (CANCEL_NOW, CANCEL_AT_TERM_END):
        on = contract.end_date if action == CANCEL_AT_TERM_END else _payload_date(payload)
        if not contract.start_date <= on <= contract.end_date:
            raise Refused(
                "a change takes effect within the contract term", kind=Refused.Kind.INVALID
            )
        credit = (
            lifecycle.unused_credit(contract=contract, lines=list(current.lines.all()), on=on)
            if action == CANCEL_NOW
            else []
        )
        total = sum((c.amount for c in credit), Decimal("0.00"))
        preview |= {
            "effective_date": str(on),
            "erp": (
                f"return {ref}: " + ", ".join(_credited(c) for c in credit) if credit else "nothing"
            ),
            "billing": "subscription cancelled "
            + ("now, the unused time prorated on a final invoice" if action == CANCEL_NOW
               else f"at the end of its billing period (set on {on}), nothing prorated"),
            "tandem": f"cancellation version; credit note {total} {contract.currency}"
            if credit else "cancellation version",
            "credit_total": str(total),
        }  # fmt: skip
        return preview
    on = _payload_date(payload)
    if not contract.start_date <= on <= contract.end_date:
        raise Refused("a change takes effect within the contract term", kind=Refused.Kind.INVALID)
    lines, before, after = _quantity_lines(contract, payload, on)
    code = str(payload.get("product_code"))
    line = next(line for line in lines if line.product_code == code)
    net = lifecycle.net_price(line)
    delta = after - before
    credit_total = Decimal("0.00")
    if delta < 0:
        reduced = dataclasses.replace(line, quantity=-delta)
        credit_total = sum(
            (c.amount for c in lifecycle.unused_credit(contract=contract, lines=[reduced], on=on)),
            Decimal("0.00"),
        )
    preview |= {
        "effective_date": str(on),
        "erp": (f"sales order: {delta.normalize():f} x {code} at {net}" if delta > 0
                else f"return: {(-delta).normalize():f} x {code} at {net}"),
        "billing": f"subscription {code} quantity {before.normalize():f} → {after.normalize():f}, "
                   f"prorated from {on}",
        "tandem": "amendment version" + (f"; credit note {credit_total} {contract.currency}"
                                         if credit_total else ""),
        "credit_total": str(credit_total),
    }  # fmt: skip
    return preview


def preview_needs_approval(preview: dict[str, Any]) -> bool:
    """Money goes back to the customer: a second person approves first."""
    return Decimal(str(preview.get("credit_total") or "0")) > 0


def contract_change_submit(
    *,
    contract: Contract,
    action: str,
    payload: dict[str, Any],
    change_key: str,
    actor: Actor,
    reason: str,
) -> ContractVersion:
    """Record an operator's change as a version and start its workflow (once per
    ``change_key``). Refuses what the dry run refuses; a stale change is parked."""
    contract_change_preview(contract=contract, action=action, payload=payload)
    cause_ref = actor.name
    with transaction.atomic():
        if action == RENEW:
            current = _current(contract)
            lines = lifecycle.renewal_lines(contract, current)
            recorded = lifecycle.contract_renewal_record(
                contract=contract, term_end=lines[0].term_end or contract.end_date, lines=lines,
                cause=VersionCause.OPERATOR, cause_ref=cause_ref, change_key=change_key,
                actor=actor, reason=reason,
            )  # fmt: skip
        elif action in (CANCEL_NOW, CANCEL_AT_TERM_END):
            recorded = lifecycle.contract_cancellation_record(
                contract=contract,
                mode=lifecycle.CANCEL_NOW if action == CANCEL_NOW else lifecycle.CANCEL_AT_TERM_END,
                effective_date=_payload_date(payload), cause=VersionCause.OPERATOR,
                cause_ref=cause_ref, change_key=change_key, actor=actor, reason=reason,
            )  # fmt: skip
        else:
            on = _payload_date(payload)
            lines, _, _ = _quantity_lines(contract, payload, on)
            existing = contract.versions.filter(change_key=change_key).first()
            if existing is not None:
                return existing
            order = services.amendment_order_create(
                contract=contract, cpq_quote_id=f"OPR-{contract.enterprise_id}-{change_key}",
                effective_date=on, approved_at=timezone.now(), lines=lines, actor=actor,
                reason=reason,
            )  # fmt: skip
            recorded = lifecycle.contract_change_record(
                contract=contract, kind=VersionKind.AMENDMENT, effective_date=on, lines=lines,
                cause=VersionCause.OPERATOR, cause_ref=cause_ref, change_key=change_key,
                order=order, actor=actor, reason=reason,
            )  # fmt: skip
            if recorded.parked:
                services.order_cancel(
                    order=order, actor=Actor.system("worker"), reason=recorded.version.parked_reason
                )
            elif recorded.created:
                workflow_start(
                    kind="amendment", subject_id=order.enterprise_id, order=order, actor=actor
                )
                transaction.on_commit(lambda: versions_signal_due(contract=contract))
            return recorded.version
        if recorded.created and not recorded.parked:
            change_workflow_start(version=recorded.version, actor=actor)
    return recorded.version
