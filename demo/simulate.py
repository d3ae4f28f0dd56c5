"""A rehearsal of quote to cash: the sandbox CPQ approves N quotes and Tandem processes
them through the real webhook endpoint, workers and connectors; then the books are checked.

Customers are drawn from the accounts Tandem already knows (spelled differently, as near
duplicates: the identity resolution must find them) and from new companies; products of
every line type; every legal entity with its currency. A chaos profile switches on the
sandbox's faults for the run. The summary counts every downstream record per canonical
record: more than one ERP sales order or billing subscription for an order is a duplicate
and fails the rehearsal, as does a quote that never became an order.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from django.db import connections

from core.audit import Actor
from core.problems import Category
from core.records import LineKind
from exceptions.models import OPEN_STATES, OperationalException
from exceptions.services import exception_retry
from masterdata.models import Account, LegalEntity, Product
from orchestration.connectors.registry import connector_for
from q2c.models import ORDER_FINAL, Order, OrderState

# Per call: a fifth fail one way or another. A step makes up to four calls, so most steps
# meet at least one fault and a few exhaust their retries: exceptions appear, and clear on
# retry once the faults are switched off.
_HEAVY_CALLS = {
    "latency_ms": 20,
    "error_rate": 0.1,
    "throttle_rate": 0.05,
    "retry_after_s": 1,
    "lose_response_after_commit_rate": 0.05,
    "lose_response_hold_ms": 0,
}
_HEAVY_EVENTS = {"duplicate_webhook_rate": 0.3, "reorder_webhooks": True, "reorder_window_ms": 200}
CHAOS_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "none": {},
    "light": {
        system: {"latency_ms": 30, "error_rate": 0.05, "throttle_rate": 0.05, "retry_after_s": 1}
        for system in ("erp", "billing", "tax")
    },
    "heavy": {
        "erp": {**_HEAVY_CALLS, **_HEAVY_EVENTS},
        "billing": {**_HEAVY_CALLS, **_HEAVY_EVENTS},
        "tax": dict(_HEAVY_CALLS),
        "cpq": dict(_HEAVY_EVENTS),
    },
}

COMPANY_WORDS = (
    "Northwind Contoso Fabrikam Globex Initech Umbrella Stark Wayne Tyrell Cyberdyne Hooli "
    "Vandelay Acme Soylent Aperture Massive Dynamic Blue Red Green Silver Atlas"
).split()
COMPANY_NOUNS = (
    "Traders Systems Analytics Logistics Foods Labs Industries Partners Media Robotics Energy "
    "Health Finance"
).split()
SUFFIX_BY_COUNTRY = {"US": ["Inc.", "Inc", "LLC", "Corp."], "GB": ["Ltd", "Limited", "plc"],
                     "DE": ["GmbH", "AG"]}  # fmt: skip
CITY = {"US": ("San Francisco", "94105"), "GB": ("London", "EC1A 1BB"), "DE": ("Berlin", "10115")}
FREQUENCY = {"month": "Monthly", "quarter": "Quarterly", "year": "Annual"}
CHARGE = {LineKind.RECURRING: "Recurring", LineKind.ONE_TIME: "One-Time", LineKind.USAGE: "Usage"}


class SimulationError(Exception):
    pass


@dataclass
class Sandbox:
    url: str
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.http.trust_env = False

    def _key(self, system: str) -> str:
        import os

        return os.environ.get(f"CONNECTOR_{system.upper()}_API_KEY", f"sk_sandbox_{system}")

    def post(self, system: str, path: str, body: Any) -> dict[str, Any]:
        """POST ``body`` to one system of the sandbox with its API key; the answer's JSON.
        Any answer but a 2xx raises ``SimulationError``.
        """
        response = self.http.post(
            f"{self.url}/{system}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._key(system)}"},
            timeout=30,
        )
        if response.status_code >= 300:
            raise SimulationError(f"{system} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def delete(self, system: str, path: str) -> dict[str, Any]:
        """DELETE in one system of the sandbox with its API key; the answer's JSON.
        Any answer but a 2xx raises ``SimulationError``.
        """
        response = self.http.delete(
            f"{self.url}/{system}{path}",
            headers={"Authorization": f"Bearer {self._key(system)}"},
            timeout=30,
        )
        if response.status_code >= 300:
            raise SimulationError(f"{system} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the sandbox's control API (faults, state); the answer's JSON, or None when empty.
        Any answer but a 2xx raises ``SimulationError``.
        """
        response = self.http.request(
            method,
            f"{self.url}/_control{path}",
            json=body,
            headers={"X-Sandbox-Control-Token": settings.SANDBOX_CONTROL_TOKEN},
            timeout=30,
        )
        if response.status_code >= 300:
            raise SimulationError(f"control {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None


@dataclass(frozen=True)
class Customer:
    name: str
    domain: str
    tax_id: str
    country: str
    currency: str
    near_duplicate_of: str = ""


def _customers(rng: random.Random, entities: list[LegalEntity], n: int) -> list[Customer]:
    """About a third are existing customers spelled differently; the rest new companies."""
    known = list(Account.objects.filter(status="active").order_by("pk")[:200])
    by_country = {e.country: e for e in entities}
    pool: list[Customer] = []
    new_count = 0
    for _ in range(n):
        if known and rng.random() < 0.35:
            account = rng.choice(known)
            if account.country in by_country:
                variant = account.legal_name.upper().replace(",", "").replace(".", "")
                twin = Customer(
                    variant,
                    account.domain,
                    account.tax_id,
                    account.country,
                    account.currency,
                    near_duplicate_of=account.enterprise_id,
                )
                pool.append(twin)
                continue
        entity = rng.choice(entities)
        new_count += 1
        stem = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_NOUNS)}"
        suffix = rng.choice(SUFFIX_BY_COUNTRY.get(entity.country, ["Ltd"]))
        slug = stem.lower().replace(" ", "-")
        tag = rng.randrange(10_000, 99_999)
        tax_id = f"{entity.country}{tag}{rng.randrange(1000, 9999)}"
        pool.append(
            Customer(f"{stem} {tag} {suffix}", f"{slug}-{tag}.example", tax_id, entity.country,
                     entity.currency)
        )  # fmt: skip
    return pool


def _catalog() -> tuple[list[LegalEntity], dict[str, list[Product]]]:
    entities = list(
        LegalEntity.objects.exclude(erp_subsidiary="").exclude(tax_registration="").order_by("code")
    )
    products: dict[str, list[Product]] = {kind: [] for kind in LineKind.values}
    for product in Product.objects.filter(is_active=True).prefetch_related("mappings"):
        systems = {mapping.system for mapping in product.mappings.all()}
        if "erp" in systems and (product.kind != LineKind.RECURRING or "billing" in systems):
            products[product.kind].append(product)
    if not entities or not products[LineKind.RECURRING]:
        raise SimulationError(
            "no legal entity with an ERP subsidiary and tax registration, or no recurring "
            "product mapped to ERP and billing: seed the catalog first (manage.py seed_demo)"
        )
    return entities, products


def _quote_lines(rng: random.Random, products: dict[str, list[Product]]) -> list[dict[str, Any]]:
    lines = []
    chosen = [rng.choice(products[LineKind.RECURRING])]
    for kind in (LineKind.ONE_TIME, LineKind.USAGE, LineKind.RECURRING):
        if products[kind] and rng.random() < 0.45:
            chosen.append(rng.choice(products[kind]))
    for product in dict.fromkeys(chosen):  # one line per product
        line: dict[str, Any] = {
            "ProductCode": product.sku,
            "SBQQ__ProductName__c": product.name,
            "SBQQ__ChargeType__c": CHARGE[LineKind(product.kind)],
            "SBQQ__Quantity__c": str(rng.choice([1, 2, 5, 10, 25, 50])),
            "SBQQ__ListPrice__c": str(Decimal(rng.randrange(500, 500_000)) / 100),
            "SBQQ__Discount__c": str(rng.choice([0, 0, 5, 10, 15])),
        }
        if product.kind == LineKind.RECURRING:
            line["SBQQ__BillingFrequency__c"] = FREQUENCY.get(product.billing_period, "Monthly")
        lines.append(line)
    return lines


@dataclass
class Summary:
    quotes_approved: int = 0
    orders_by_state: dict[str, int] = field(default_factory=dict)
    quotes_without_order: list[str] = field(default_factory=list)
    open_exceptions_by_category: dict[str, int] = field(default_factory=dict)
    exceptions_retried: int = 0
    downstream: dict[str, Any] = field(default_factory=dict)
    cycle_time_seconds: dict[str, float | None] = field(default_factory=dict)
    near_duplicates_sent: int = 0
    near_duplicates_matched: int = 0
    elapsed_seconds: float = 0.0
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain dict (for the JSON the command prints)."""
        return dict(self.__dict__)


def _settled(order: Order) -> bool:
    if order.state in ORDER_FINAL or order.state == OrderState.ACTIVE:
        return True
    # An open exception settles an order (a person must act); one being retried does not.
    return OperationalException.objects.filter(order=order, state="open").exists()


def _wait(
    cpq_ids: list[str], *, timeout: float, progress: Callable[[int, int], None]
) -> dict[str, Order]:
    deadline = time.monotonic() + timeout
    orders: dict[str, Order] = {}
    while True:
        connections.close_all()
        orders = {
            order.quote.cpq_quote_id: order
            for order in Order.objects.select_related("quote").filter(
                quote__cpq_quote_id__in=cpq_ids
            )
            if order.quote is not None
        }
        done = sum(1 for order in orders.values() if _settled(order))
        progress(done, len(cpq_ids))
        if done == len(cpq_ids) or time.monotonic() > deadline:
            return orders
        time.sleep(1.0)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def _downstream(sandbox: Sandbox, orders: list[Order]) -> dict[str, Any]:
    """Each order's sales orders and subscriptions, counted in whichever system serves the
    ERP and billing: a real one (Tryton, Stripe) is asked through its connector, the sandbox
    is read from its state."""
    ids = [order.enterprise_id for order in orders]
    erp, billing = connector_for("erp"), connector_for("billing")
    if hasattr(erp, "sales_orders_count"):
        sales_orders = Counter(erp.sales_orders_count(references=ids))
    else:
        rows = sandbox.control("GET", "/state/erp")["records"].get("salesorders", [])
        sales_orders = Counter(row.get("externalId") for row in rows)
    if hasattr(billing, "subscriptions_count"):
        subscriptions = Counter(billing.subscriptions_count(references=ids))
    else:
        rows = sandbox.control("GET", "/state/billing")["records"].get("subscriptions", [])
        subscriptions = Counter((row.get("metadata") or {}).get("tandem_order") for row in rows)
    duplicates = {
        order_id: {"erp": sales_orders[order_id], "billing": subscriptions[order_id]}
        for order_id in ids
        if sales_orders[order_id] > 1 or subscriptions[order_id] > 1
    }
    return {
        "erp_sales_orders": sum(sales_orders[order_id] for order_id in ids),
        "billing_subscriptions": sum(subscriptions[order_id] for order_id in ids),
        "orders_with_duplicates": duplicates,
    }


def _faults_off(sandbox: Sandbox, chaos: str) -> None:
    for system in CHAOS_PROFILES[chaos]:
        sandbox.control("DELETE", f"/faults/{system}")


def _quotes_approve(
    sandbox: Sandbox,
    rng: random.Random,
    entities: list[LegalEntity],
    products: dict[str, list[Product]],
    quotes: int,
) -> tuple[list[str], dict[str, str]]:
    """Create ``quotes`` customers in the sandbox CRM and approve a quote for each in CPQ.

    Returns the CPQ quote ids in order, and the enterprise id each near-duplicate customer's
    quote should resolve to, by quote id.
    """
    entity_by_country = {entity.country: entity for entity in entities}
    cpq_ids: list[str] = []
    near: dict[str, str] = {}
    start = dt.date.today().replace(day=1)
    for customer in _customers(rng, entities, quotes):
        entity = entity_by_country[customer.country]
        city, postcode = CITY.get(customer.country, ("Capital", "10000"))
        crm = sandbox.post("crm", "/accounts", {
            "Name": customer.name, "Website": f"https://www.{customer.domain}",
            "BillingCountryCode": customer.country, "BillingCity": city,
            "BillingPostalCode": postcode,
            "BillingStreet": f"{rng.randrange(1, 300)} Main Street",
            "CurrencyIsoCode": customer.currency, "Tax_Id__c": customer.tax_id,
        })  # fmt: skip
        quote = sandbox.post("cpq", "/quotes", {
            "SBQQ__Account__c": crm["id"], "CurrencyIsoCode": entity.currency,
            "SBQQ__StartDate__c": start.isoformat(), "SBQQ__SubscriptionTerm__c": 12,
            "Legal_Entity__c": entity.code, "lines": _quote_lines(rng, products),
        })  # fmt: skip
        sandbox.post("cpq", f"/quotes/{quote['Id']}/approve", {})
        cpq_ids.append(quote["Id"])
        if customer.near_duplicate_of:
            near[quote["Id"]] = customer.near_duplicate_of
    return cpq_ids, near


def _downstream_exceptions_retry(orders: list[Order]) -> int:
    """Retry the orders' open downstream-API exceptions (the faults are off); how many."""
    retried = 0
    for exc in OperationalException.objects.filter(
        order__in=orders, state="open", category=Category.DOWNSTREAM_API
    ):
        exception_retry(
            exception=exc,
            actor=Actor.system("worker"),
            reason="rehearsal: faults off, retrying",
        )
        retried += 1
    return retried


def _near_duplicates_matched(near: dict[str, str], orders: dict[str, Order]) -> int:
    """How many near-duplicate customers' orders were resolved to the account they copy."""
    return len(
        [
            cpq_id
            for cpq_id, enterprise_id in near.items()
            if cpq_id in orders
            and orders[cpq_id].account_id is not None
            and Account.objects.filter(
                pk=orders[cpq_id].account_id, enterprise_id=enterprise_id
            ).exists()
        ]
    )


def _books_check(
    summary: Summary,
    *,
    sandbox: Sandbox,
    cpq_ids: list[str],
    orders: dict[str, Order],
    near: dict[str, str],
) -> None:
    """Fill ``summary`` with what became of the quotes, and whether the rehearsal passed."""
    order_list = list(orders.values())
    summary.orders_by_state = dict(Counter(order.state for order in order_list))
    summary.quotes_without_order = [cpq_id for cpq_id in cpq_ids if cpq_id not in orders]
    summary.open_exceptions_by_category = dict(
        Counter(
            OperationalException.objects.filter(
                order__in=order_list, state__in=OPEN_STATES
            ).values_list("category", flat=True)
        )
    )
    summary.downstream = _downstream(sandbox, order_list)
    cycle = [
        (order.activated_at - order.created_at).total_seconds()
        for order in order_list
        if order.activated_at
    ]
    summary.cycle_time_seconds = {"p50": _percentile(cycle, 50), "p95": _percentile(cycle, 95)}
    summary.near_duplicates_sent = len(near)
    summary.near_duplicates_matched = _near_duplicates_matched(near, orders)
    unsettled = [order for order in order_list if not _settled(order)]
    summary.ok = (
        not summary.downstream["orders_with_duplicates"]
        and not summary.quotes_without_order
        and not unsettled
    )


def simulate(
    *,
    quotes: int,
    chaos: str = "none",
    seed: int = 1,
    sandbox_url: str | None = None,
    timeout: float = 900.0,
    retry_exceptions: bool = True,
    wait: bool = True,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Summary:
    """Approve ``quotes`` quotes in the sandbox CPQ under the ``chaos`` profile and check the
    books once every order settled (or ``timeout`` seconds passed).

    ``seed`` makes the customers and lines repeatable. With ``retry_exceptions`` the faults are
    switched off and open downstream-API exceptions retried once, as an operator would. Without
    ``wait`` it returns after the approvals. The faults are off again whatever happens. Raises
    ``SimulationError`` for an unknown chaos profile; the summary's ``ok`` says whether the
    books agree (no duplicates, every quote an order, every order settled).
    """
    if chaos not in CHAOS_PROFILES:
        raise SimulationError(f"unknown chaos profile {chaos!r}: {', '.join(CHAOS_PROFILES)}")
    started = time.monotonic()
    rng = random.Random(seed)
    sandbox = Sandbox(url=(sandbox_url or settings.CONNECTOR_SANDBOX_URL).rstrip("/"))
    entities, products = _catalog()
    for system, faults in CHAOS_PROFILES[chaos].items():
        sandbox.control("POST", f"/faults/{system}", faults)
    summary = Summary()
    try:
        cpq_ids, near = _quotes_approve(sandbox, rng, entities, products, quotes)
        summary.quotes_approved = len(cpq_ids)
        if not wait:
            return summary
        orders = _wait(cpq_ids, timeout=timeout, progress=progress)
        if chaos != "none" and retry_exceptions:
            _faults_off(sandbox, chaos)
            summary.exceptions_retried = _downstream_exceptions_retry(list(orders.values()))
            if summary.exceptions_retried:
                orders = _wait(cpq_ids, timeout=timeout, progress=progress)
    finally:
        _faults_off(sandbox, chaos)
    _books_check(summary, sandbox=sandbox, cpq_ids=cpq_ids, orders=orders, near=near)
    summary.elapsed_seconds = round(time.monotonic() - started, 1)
    return summary
