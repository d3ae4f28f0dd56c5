"""What the domain tests share.

A model's state machine is read from its django-fsm metadata, so a new state or transition is
covered by the generated cases without editing a list. ``walk_to`` puts a record into any state
by running legal transitions through the services (never by assigning the protected field).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import count
from typing import Any, Protocol

from django.apps import apps
from django.db import models, transaction
from django.utils import timezone
from django_fsm import ANY_OTHER_STATE, ANY_STATE, FSMFieldMixin, State
from simple_history.models import HistoricalChanges

from core.audit import Actor, audit_context
from core.identifiers import PREFIXES, IdentifierCounter, identifier_allocate
from core.records import BillingPeriod, LineKind
from q2c import services
from q2c.models import CreditNote, Order, Quote, UsageRecord
from tests import factories


class Step(Protocol):
    """Run one transition on ``record`` through the services and return the record.

    ``target`` matters only for a transition whose target is computed (RETURN_VALUE): it says
    which of its targets to produce; ``None`` means "run it the ordinary way".
    """

    def __call__(self, record: Any, *, target: str | None, actor: Actor, reason: str) -> Any: ...


# --- The state machine, read from the model ---------------------------------------------------


def fsm_field(model: type[models.Model]) -> FSMFieldMixin:
    (field,) = [f for f in model._meta.concrete_fields if isinstance(f, FSMFieldMixin)]
    return field


def fsm_states(model: type[models.Model]) -> list[str]:
    return [str(value) for value, _ in fsm_field(model).choices]


def fsm_transitions(model: type[models.Model]) -> dict[str, dict[str, Any]]:
    """``{transition: {source: target}}``; a computed target is a django_fsm ``State``."""
    states = fsm_states(model)
    machine: dict[str, dict[str, Any]] = {}
    for name, method in sorted(fsm_field(model).transitions[model].items()):
        edges: dict[str, Any] = {}
        for source, tr in method._django_fsm.transitions.items():
            if source == ANY_STATE:
                edges.update(dict.fromkeys(states, tr.target))
            elif source == ANY_OTHER_STATE:
                edges.update({s: tr.target for s in states if s != tr.target})
            else:
                edges[str(source)] = tr.target
        machine[name] = edges
    return machine


def fsm_sources(model: type[models.Model], name: str) -> list[str]:
    return sorted(fsm_transitions(model)[name])


def fsm_refused_cases(model: type[models.Model]) -> list[tuple[str, str]]:
    """Every ``(transition, state)`` the machine refuses: each state not among its sources."""
    states = fsm_states(model)
    return [
        (name, state)
        for name, edges in fsm_transitions(model).items()
        for state in states
        if state not in edges
    ]


def fsm_allowed_cases(
    model: type[models.Model], *, computed: Mapping[str, Sequence[str]]
) -> list[tuple[str, str, str]]:
    """Every ``(transition, source, target)`` the machine allows.

    A computed target cannot be read from the metadata: ``computed`` lists, per transition, the
    targets the test knows how to produce (an empty list: that transition has its own tests).
    A computed transition missing from ``computed`` is an error, so none is left out silently.
    """
    cases = []
    for name, edges in fsm_transitions(model).items():
        for source, target in edges.items():
            if isinstance(target, State):
                if name not in computed:
                    raise LookupError(
                        f"{model.__name__}.{name} computes its target: say which targets to test"
                    )
                allowed = {str(s) for s in target.allowed_states}
                cases.extend((name, source, t) for t in computed[name] if t in allowed)
            else:
                cases.append((name, source, str(target)))
    return cases


def case_ids(cases: Sequence[Sequence[str]]) -> list[str]:
    """Readable test ids: ``transition:source:target`` or ``transition:state``."""
    return [":".join(case) for case in cases]


def fsm_path(
    model: type[models.Model], *, start: str, to: str, computed: Mapping[str, Sequence[str]]
) -> list[tuple[str, str]]:
    """The shortest list of ``(transition, target)`` leading from ``start`` to ``to``."""
    edges: dict[str, list[tuple[str, str]]] = {}
    for name, source, target in fsm_allowed_cases(model, computed=computed):
        edges.setdefault(source, []).append((name, target))
    paths: dict[str, list[tuple[str, str]]] = {str(start): []}
    queue = deque([str(start)])
    while queue:
        state = queue.popleft()
        if state == to:
            return paths[state]
        for name, target in edges.get(state, []):
            if target not in paths:
                paths[target] = [*paths[state], (name, target)]
                queue.append(target)
    raise LookupError(f"no legal path leads a {model.__name__} from '{start}' to '{to}'")


def walk_to(
    record: Any,
    state: str,
    *,
    steps: Mapping[str, Step],
    computed: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """Run legal transitions through ``steps`` until ``record`` is in ``state``."""
    actor = Actor.system("worker")
    path = fsm_path(type(record), start=record.state, to=state, computed=computed or {})
    for name, target in path:
        record = steps[name](record, target=target, actor=actor, reason=f"walk to {state}")
        if record.state != target:
            raise AssertionError(f"{name} led {record} to '{record.state}', not '{target}'")
    return record


def _order_service_step(name: str) -> Step:
    service = getattr(services, f"order_{name}")

    def step(order: Order, *, target: str | None, actor: Actor, reason: str) -> Order:
        return service(order=order, actor=actor, reason=reason)

    return step


# Every order transition has its service ``order_<transition>``; one without fails at import.
ORDER_STEPS: dict[str, Step] = {name: _order_service_step(name) for name in fsm_transitions(Order)}
# ``release`` returns to the state the order was held from: a walk never needs it.
ORDER_COMPUTED: dict[str, list[str]] = {"release": []}


def order_in(state: str, **kw: Any) -> Order:
    """A new order (see ``factories.order``) walked into ``state`` through the services."""
    return walk_to(factories.order(**kw), state, steps=ORDER_STEPS, computed=ORDER_COMPUTED)


# --- History and "nothing changed" ------------------------------------------------------------


def last_history(record: Any, *fields: str) -> tuple[Any, ...]:
    """``(state or fields…, username, reason)`` of the newest history row of ``record``."""
    names = fields or ("state",)
    row = record.history.order_by("-history_id").values_list(
        *names, "history_user__username", "history_change_reason"
    )[0]
    return tuple(row)


RECORD_APPS = ("q2c", "masterdata")


def record_models() -> list[type[models.Model]]:
    """Every model of the apps that hold the canonical records, history models included."""
    return [model for label in RECORD_APPS for model in apps.get_app_config(label).get_models()]


def historical_models() -> list[type[models.Model]]:
    return [m for m in record_models() if issubclass(m, HistoricalChanges)]


def history_marks() -> dict[type[models.Model], int]:
    """The newest history id of every historical model, to find the rows written after it."""
    return {
        model: model.objects.order_by("-history_id").values_list("history_id", flat=True).first()
        or 0
        for model in historical_models()
    }


def history_since(marks: Mapping[type[models.Model], int]) -> list[tuple[str, str, str, str]]:
    """Every history row written after ``marks``: (model, type, username, reason), sorted."""
    rows = []
    for model, mark in marks.items():
        for row in model.objects.filter(history_id__gt=mark).values_list(
            "history_type", "history_user__username", "history_change_reason"
        ):
            rows.append((model.instance_type.__name__, *row))
    return sorted(rows)


def database_snapshot() -> dict[str, object]:
    """Row counts of every Tandem table (history included) and the identifier counters."""
    snapshot: dict[str, object] = {
        model._meta.label: model._default_manager.count() for model in record_models()
    }
    snapshot["counters"] = sorted(IdentifierCounter.objects.values_list("prefix", "last_value"))
    return snapshot


# --- Records without a creating service yet ---------------------------------------------------

_quote_numbers = count(1)


def quote(**kw: Any) -> Quote:
    acc = kw.pop("account", None) or factories.account()
    return services.quote_create(
        cpq_quote_id=kw.pop("cpq_quote_id", f"CPQ-Q-{next(_quote_numbers)}"),
        account=acc,
        legal_entity=acc.legal_entity,
        currency=acc.currency,
        approved_at=kw.pop("approved_at", timezone.now()),
        lines=kw.pop("lines", None) or [factories.line()],
        actor=factories.actor(),
        reason="test setup",
        **kw,
    )


def credit_note(**kw: Any) -> CreditNote:
    """A draft credit note written directly: no service creates credit notes yet."""
    invoice = kw.pop("invoice", None) or factories.invoice()
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        return CreditNote.objects.create(
            enterprise_id=identifier_allocate(prefix=PREFIXES["credit_note"]),
            invoice=invoice,
            account=invoice.account,
            currency=invoice.currency,
            amount=kw.pop("amount", Decimal("10.00")),
            reason=kw.pop("reason", "goodwill"),
            **kw,
        )


def usage_record(**kw: Any) -> UsageRecord:
    """A received usage record written directly: no service creates usage records yet."""
    contract = kw.pop("contract", None) or factories.contract()
    product = kw.pop("product", None) or factories.product(
        kind=LineKind.USAGE, billing_period=BillingPeriod.NONE
    )
    with transaction.atomic(), audit_context(actor=factories.actor(), reason="test setup"):
        enterprise_id = identifier_allocate(prefix=PREFIXES["usage"])
        return UsageRecord.objects.create(
            enterprise_id=enterprise_id,
            contract=contract,
            product=product,
            quantity=kw.pop("quantity", Decimal("12.5")),
            occurred_at=kw.pop("occurred_at", dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)),
            source_system=kw.pop("source_system", "billing"),
            source_event_id=kw.pop("source_event_id", f"evt-{enterprise_id}"),
            **kw,
        )
