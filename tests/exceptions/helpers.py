"""What the exception queue's tests share.

Exceptions are raised the real way: a tiny registered workflow (see conftest.py) whose step
fails permanently, executed in-process by the engine, which also holds the order.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group

from core.audit import Actor
from core.problems import Category
from exceptions.models import OperationalException
from orchestration.workflows import engine
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.models import StepRun, StepState, WorkflowRun
from q2c.models import Order
from tests import factories

KIND = "exceptions_test_flow"
ANONYMOUS = "anonymous"
NO_ROLE = "no role"
ADMIN = "admin"

# (subject id, step name) -> the failures that step raises, in order; absent: it succeeds.
planned: dict[tuple[str, str], list[StepFailed]] = {}


def _handler(name: str):  # type: ignore[no-untyped-def]
    def handle(ctx: engine.StepContext) -> engine.Done:
        failures = planned.get((ctx.run.subject_id, name)) or []
        if failures:
            raise failures.pop(0)
        return engine.Done(external_id=f"{name.upper()}-{ctx.run.subject_id}")

    return handle


FLOW = engine.WorkflowDef(
    kind=KIND,
    steps=[
        engine.StepDef("check_quote", _handler("check_quote"), has_effect=False),
        engine.StepDef("create_customer", _handler("create_customer"), system="erp"),
        engine.StepDef("create_subscription", _handler("create_subscription"), system="billing"),
    ],
)


def drain(run: WorkflowRun) -> None:
    """Execute queued steps in order until none is queued, as a worker would."""
    while True:
        step = StepRun.objects.filter(run=run, state=StepState.QUEUED).order_by("position").first()
        if step is None:
            return
        engine.step_execute(step_id=step.pk)


def raise_exception(
    *,
    step: str = "create_customer",
    message: str = "customer rejected: tax id invalid",
    category: str = Category.MASTER_DATA,
    error_class: str = "ValidationError",
    order: Order | None = None,
    **context: Any,
) -> OperationalException:
    """Run the test workflow for a new order with ``step`` failing once, permanently."""
    order = order or factories.order()
    planned[(order.enterprise_id, step)] = [
        StepFailed(message, category=category, error_class=error_class, **context)
    ]
    run = engine.workflow_start(
        kind=KIND, subject_id=order.enterprise_id, order=order, actor=Actor.system("worker")
    )
    drain(run)
    return OperationalException.objects.get(workflow_run=run)


def snapshot(exc: OperationalException) -> tuple[Any, ...]:
    """Everything an action on an exception could change, read fresh from the database."""
    exc = OperationalException.objects.select_related("step_run", "workflow_run", "order").get(
        pk=exc.pk
    )
    assert exc.step_run is not None and exc.workflow_run is not None and exc.order is not None
    return (
        exc.state,
        exc.resolution_code,
        exc.resolution_note,
        exc.history.count(),
        exc.step_run.state,
        exc.workflow_run.state,
        exc.order.state,
    )


def user_for(who: str) -> Any:
    """A fresh user acting as ``who`` (a role name, admin, no role, or anonymous)."""
    if who == ANONYMOUS:
        return AnonymousUser()
    users = get_user_model().objects
    name = f"user-{who.replace(' ', '-')}"
    if who == ADMIN:
        return users.create_superuser(username=name, password="pw", email="a@example.com")
    user = users.create_user(username=name, password="pw")
    if who != NO_ROLE:
        user.groups.add(Group.objects.get(name=who))
    return user


# --- quote to cash, for corrected payloads ---------------------------------------------------

GOOD_CUSTOMER: dict[str, Any] = {
    "name": "Harbour Analytics Ltd",
    "country": "GB",
    "currency": "GBP",
    "crm_id": "001HARBOUR",
    "tax_id": "GB 318 2260 11",
    "domain": "harbour-analytics.example",
    "email": "ap@harbour-analytics.example",
    "address": {"line1": "42 George Street", "city": "Edinburgh", "postcode": "EH2 2LE"},
}


def q2c_run(*, customer_snapshot: dict[str, Any], account: Any = None) -> tuple[Order, WorkflowRun]:
    """A quote from CPQ (one mapped recurring line) converted to an order, its quote-to-cash
    run started; nothing executed yet."""
    from django.utils import timezone

    from masterdata.services import records as md_services
    from orchestration.workflows.quote_to_cash import KIND as Q2C
    from q2c import services as q2c_services

    worker = Actor.system("worker")
    entity = (
        account.legal_entity
        if account is not None
        else factories.legal_entity(erp_subsidiary="1", tax_registration="GB999999973")
    )
    product = factories.product()
    for system in ("erp", "billing"):
        md_services.product_map(
            product=product, system=system, external_id=f"{system}-{product.sku}",
            actor=worker, reason="test setup",
        )  # fmt: skip
    quote = q2c_services.quote_create(
        cpq_quote_id=f"Q-{product.sku}", account=account, legal_entity=entity, currency="GBP",
        approved_at=timezone.now(),
        lines=[factories.line(product_code=product.sku, product=product)],
        customer_snapshot=customer_snapshot, actor=worker, reason="test setup",
    )  # fmt: skip
    order = q2c_services.quote_convert_to_order(quote=quote, actor=worker, reason="test setup")
    run = engine.workflow_start(kind=Q2C, subject_id=order.enterprise_id, order=order, actor=worker)
    return order, run


def run_through(run: WorkflowRun, last_step: str) -> None:
    """Execute queued steps in order up to and including ``last_step`` (no further: the later
    steps call systems)."""
    limit = StepRun.objects.get(run=run, name=last_step).position
    while True:
        step = (
            StepRun.objects.filter(run=run, state=StepState.QUEUED, position__lte=limit)
            .order_by("position")
            .first()
        )
        if step is None:
            return
        engine.step_execute(step_id=step.pk)
