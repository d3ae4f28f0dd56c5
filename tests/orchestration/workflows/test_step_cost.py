"""What a step of quote to cash costs the database, pinned: the SQL statements each step runs
and the transactions one order's steps commit, for a single order run in-process against the
sandbox. A change that makes a step read or write more fails here, naming the step.

Measured warm, as a worker runs after its first order: the system actors' users and the
circuit breakers' rows exist, and the breakers' clean state is remembered for the whole test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection

from core.audit import Actor
from masterdata.services import records as md_services
from orchestration.workflows import engine
from orchestration.workflows.models import CircuitBreaker, RunState, StepRun, StepState, WorkflowRun
from q2c.models import Order, OrderState
from tests import factories
from tests.sandbox.helpers import SandboxClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("connectors")]

# Statements per step (a waiting step runs twice: once to wait, once when its event came).
# Before this was pinned, the same run measured 363 statements and 152 transactions.
PINNED_STATEMENTS = {
    "validate_quote": 12,
    "resolve_customer": 12,
    "map_products": 16,
    "split_lines": 12,
    "check_tax_and_entity": 18,
    "upsert_customer_erp": 23,
    "upsert_customer_billing": 22,
    "create_erp_order": 27,
    "await_financial_acceptance": 8,
    "await_financial_acceptance again": 15,
    "create_subscription": 52,
    "send_one_time_lines": 14,
    "activate_contract": 8,
    "activate_contract again": 24,
}
# Transactions one order's steps commit (the handlers' own writes included).
PINNED_TRANSACTIONS_PER_ORDER = 114


@dataclass
class Cost:
    statements: int = 0
    transactions: int = 0  # committed: atomic blocks, and each statement run in autocommit
    sql: list[str] = field(default_factory=list)


@contextmanager
def counted() -> Iterator[Cost]:
    """Count the statements this connection runs and the transactions it commits."""
    cost = Cost()

    def statement(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
        cost.statements += 1
        cost.sql.append(sql[:120])
        if not connection.in_atomic_block:
            cost.transactions += 1  # autocommit: the statement is a transaction of its own
        return execute(sql, params, many, ctx)

    commit = connection._commit

    def counting_commit() -> None:
        cost.transactions += 1
        commit()

    connection._commit = counting_commit  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(statement):
            yield cost
    finally:
        del connection._commit


@pytest.fixture
def warm(settings: Any) -> None:
    """A worker's state after its first order: system users and breaker rows exist, and the
    breakers' clean state stays remembered (so the counts do not depend on timing)."""
    settings.CIRCUIT_CLEAN_CACHE_SECONDS = 3600
    for name in ("worker", "connector:erp", "connector:billing", "connector:crm"):
        Actor.system(name)
    for system in ("tax", "erp", "billing"):
        CircuitBreaker.objects.create(system=system)


def _order() -> Order:
    entity = factories.legal_entity(code="UK01", erp_subsidiary="2", tax_registration="GB299999973")
    product = factories.product(sku="SKU-UK01")
    for system in ("erp", "billing"):
        md_services.product_map(
            product=product, system=system, external_id=f"{system}-{product.sku}",
            actor=Actor.system("worker"), reason="test setup",
        )  # fmt: skip
    line = factories.line(product_code=product.sku, product=product)
    return factories.order(account=factories.account(legal_entity=entity), lines=[line])


def _drain(run: WorkflowRun, costs: dict[str, Cost]) -> None:
    while True:
        step = StepRun.objects.filter(run=run, state=StepState.QUEUED).order_by("position").first()
        if step is None:
            return
        with counted() as cost:
            engine.step_execute(step_id=step.pk)
        costs[step.name if step.name not in costs else f"{step.name} again"] = cost


def _single_order(sandbox: SandboxClient) -> dict[str, Cost]:
    """Every step of one order's quote to cash, its two events delivered as they come."""
    costs: dict[str, Cost] = {}
    order = _order()
    run = engine.workflow_start(
        kind="quote_to_cash", subject_id=order.enterprise_id, order=order, actor=factories.actor()
    )
    _drain(run, costs)
    sales_order = next(
        o for o in sandbox.state("erp")["records"]["salesorders"]
        if o["externalId"] == order.enterprise_id
    )  # fmt: skip
    response = sandbox.control("POST", f"/erp/approve/{sales_order['internalId']}")
    assert response.status_code == 200, response.text
    engine.workflow_signal(run=run, event_type="order.accepted", payload=response.json())
    _drain(run, costs)
    contract = order.contracts.get()
    engine.workflow_signal(
        run=run,
        event_type="subscription.activated",
        payload={"contract_id": contract.enterprise_id},
    )
    _drain(run, costs)
    run.refresh_from_db()
    assert run.state == RunState.COMPLETED
    assert Order.objects.get(pk=order.pk).state == OrderState.ACTIVE
    return costs


@pytest.mark.usefixtures("warm")
def test_no_step_of_an_order_costs_more_than_pinned(sandbox):
    # given / when
    costs = _single_order(sandbox)
    # then
    measured = {name: (cost.statements, cost.transactions) for name, cost in costs.items()}
    assert list(measured) == list(PINNED_STATEMENTS), measured
    grown = {
        name: f"{cost.statements} > {PINNED_STATEMENTS[name]}: " + " | ".join(cost.sql)
        for name, cost in costs.items()
        if cost.statements > PINNED_STATEMENTS[name]
    }
    assert grown == {}, str(measured)
    transactions = sum(cost.transactions for cost in costs.values())
    assert transactions <= PINNED_TRANSACTIONS_PER_ORDER, measured
