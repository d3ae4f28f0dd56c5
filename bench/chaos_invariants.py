"""The chaos soak's invariant checker: what must hold after any amount of killing.

``observe`` reads what happened, from the sandbox (quotes approved in CPQ, records in the ERP
and billing, webhooks it delivered and how they were answered) and from Tandem's database
(orders, open exceptions, history rows, inbound events). ``invariants_check`` turns that into
counts and says whether anything was lost or duplicated:

- every quote approved in CPQ became exactly one order, and every order is either completed
  (active) or held behind an open exception a person sees;
- every order has at most one ERP sales order and one billing subscription, and an active
  order exactly one of each; every account at most one ERP and one billing customer;
- the latest history row of every order and workflow run shows its current state (a change
  made without history, a bulk update, would leave it behind);
- every webhook delivery Tandem answered 2xx became work: its event is processed, absorbed
  as a duplicate, or visible as rejected or dead; none is missing or left unprocessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LOSS_KEYS = (
    "quotes_without_order",
    "orders_neither_completed_nor_visible",
    "deliveries_2xx_lost",
    "history_rows_missing",
)
DUPLICATE_KEYS = (
    "quotes_with_several_orders",
    "orders_with_several_erp_sales_orders",
    "orders_with_several_billing_subscriptions",
    "accounts_with_several_erp_customers",
    "accounts_with_several_billing_customers",
    "active_orders_missing_downstream",
)


@dataclass
class OrderSeen:
    order_id: str
    account_id: str
    state: str
    active: bool
    open_exception: bool


@dataclass
class Observed:
    """What the soak left behind, as plain data (see ``observe``)."""

    quotes_in: list[str]
    orders_by_quote: dict[str, list[OrderSeen]]
    erp_sales_orders: Counter[str] = field(default_factory=Counter)  # per order id
    billing_subscriptions: Counter[str] = field(default_factory=Counter)  # per order id
    erp_customers: Counter[str] = field(default_factory=Counter)  # per account id
    billing_customers: Counter[str] = field(default_factory=Counter)  # per account id
    history_missing: list[str] = field(default_factory=list)  # records whose state has no row
    history_rows: int = 0
    deliveries_2xx: list[tuple[str, str]] = field(default_factory=list)  # (system, event id)
    inbound_status: dict[tuple[str, str], str] = field(default_factory=dict)


WORK_DONE = {"processed", "duplicate_absorbed"}
VISIBLE = {"rejected", "dead", "discarded"}


def invariants_check(seen: Observed) -> dict[str, Any]:
    """The counts of the soak and ``ok``: True only when nothing was lost or duplicated."""
    orders = [order for found in seen.orders_by_quote.values() for order in found]
    quotes_without = [q for q in seen.quotes_in if not seen.orders_by_quote.get(q)]
    several = [q for q in seen.quotes_in if len(seen.orders_by_quote.get(q, [])) > 1]
    completed = [o for o in orders if o.active]
    visible = [o for o in orders if not o.active and o.open_exception]
    neither = [o.order_id for o in orders if not o.active and not o.open_exception]
    accounts = {o.account_id for o in orders}
    missing_downstream = [
        o.order_id
        for o in completed
        if seen.erp_sales_orders[o.order_id] != 1 or seen.billing_subscriptions[o.order_id] != 1
    ]
    answered = sorted(set(seen.deliveries_2xx))
    became_work = [d for d in answered if seen.inbound_status.get(d) in WORK_DONE]
    visible_events = [d for d in answered if seen.inbound_status.get(d) in VISIBLE]
    lost = [d for d in answered if seen.inbound_status.get(d) not in WORK_DONE | VISIBLE]
    counts: dict[str, Any] = {
        "quotes_in": len(seen.quotes_in),
        "orders": len(orders),
        "orders_completed": len(completed),
        "orders_in_visible_exception": len(visible),
        "orders_neither_completed_nor_visible": len(neither),
        "quotes_without_order": len(quotes_without),
        "quotes_with_several_orders": len(several),
        "erp_sales_orders": sum(seen.erp_sales_orders[o.order_id] for o in orders),
        "billing_subscriptions": sum(seen.billing_subscriptions[o.order_id] for o in orders),
        "orders_with_several_erp_sales_orders": sum(
            1 for o in orders if seen.erp_sales_orders[o.order_id] > 1
        ),
        "orders_with_several_billing_subscriptions": sum(
            1 for o in orders if seen.billing_subscriptions[o.order_id] > 1
        ),
        "accounts_with_several_erp_customers": sum(
            1 for a in accounts if seen.erp_customers[a] > 1
        ),
        "accounts_with_several_billing_customers": sum(
            1 for a in accounts if seen.billing_customers[a] > 1
        ),
        "active_orders_missing_downstream": len(missing_downstream),
        "history_rows": seen.history_rows,
        "history_rows_missing": len(seen.history_missing),
        "deliveries_2xx": len(answered),
        "deliveries_became_work": len(became_work),
        "deliveries_visible_rejected_or_dead": len(visible_events),
        "deliveries_2xx_lost": len(lost),
    }
    examples = {
        "quotes_without_order": quotes_without[:5],
        "quotes_with_several_orders": several[:5],
        "orders_neither_completed_nor_visible": neither[:5],
        "active_orders_missing_downstream": missing_downstream[:5],
        "history_rows_missing": seen.history_missing[:5],
        "deliveries_2xx_lost": [f"{s}:{e}" for s, e in lost[:5]],
    }
    counts["lost"] = sum(counts[key] for key in LOSS_KEYS)
    counts["duplicated"] = sum(counts[key] for key in DUPLICATE_KEYS)
    counts["examples"] = {key: value for key, value in examples.items() if value}
    counts["ok"] = counts["lost"] == 0 and counts["duplicated"] == 0
    return counts


def observe(sandbox: Any) -> Observed:
    """Read the soak's outcome from the sandbox (``sandbox.control(method, path)``, as
    ``demo.simulate.Sandbox`` offers) and from Tandem's database (Django set up)."""
    from django.db import connections

    from exceptions.models import OPEN_STATES, OperationalException
    from orchestration.models import InboundEvent
    from orchestration.workflows.models import WorkflowRun
    from q2c.models import Order, OrderState

    connections.close_all()  # read what the workers committed
    quotes = sandbox.control("GET", "/state/cpq")["records"].get("quotes", [])
    quotes_in = sorted(q["Id"] for q in quotes if q.get("SBQQ__Status__c") == "Approved")
    held = set(
        OperationalException.objects.filter(state__in=OPEN_STATES, order__isnull=False).values_list(
            "order_id", flat=True
        )
    )
    orders_by_quote: dict[str, list[OrderSeen]] = {}
    rows = Order.objects.filter(quote__isnull=False).values_list(
        "pk", "enterprise_id", "account__enterprise_id", "state", "quote__cpq_quote_id"
    )
    for pk, order_id, account_id, state, quote_id in rows:
        orders_by_quote.setdefault(quote_id, []).append(
            OrderSeen(order_id, account_id or "", state, state == OrderState.ACTIVE, pk in held)
        )
    erp = sandbox.control("GET", "/state/erp")["records"]
    billing = sandbox.control("GET", "/state/billing")["records"]
    seen = Observed(
        quotes_in=quotes_in,
        orders_by_quote=orders_by_quote,
        erp_sales_orders=Counter(r.get("externalId") for r in erp.get("salesorders", [])),
        billing_subscriptions=Counter(
            str((r.get("metadata") or {}).get("tandem_order"))
            for r in billing.get("subscriptions", [])
        ),
        erp_customers=Counter(r.get("externalId") for r in erp.get("customers", [])),
        billing_customers=Counter(
            str((r.get("metadata") or {}).get("tandem_account"))
            for r in billing.get("customers", [])
        ),
    )
    for model, label in ((Order, "order"), (WorkflowRun, "run")):
        history = model.history.model.objects  # type: ignore[attr-defined]
        seen.history_rows += history.count()
        latest = dict(
            history.order_by("id", "-history_date", "-history_id")
            .distinct("id")
            .values_list("id", "state")
        )
        for pk, state in model.objects.values_list("pk", "state"):
            if latest.get(pk) != state:
                seen.history_missing.append(f"{label} {pk}: {state}, history {latest.get(pk)}")
    events = sandbox.control("GET", "/webhooks")["events"]
    seen.deliveries_2xx = [
        (event["system"], event["event_id"])
        for event in events
        if any(200 <= int(a.get("status_code", 0)) < 300 for a in event.get("attempts", []))
    ]
    seen.inbound_status = {
        (system, event_id): status
        for system, event_id, status in InboundEvent.objects.filter(
            signature_valid=True
        ).values_list("system", "event_id", "status")
    }
    return seen
