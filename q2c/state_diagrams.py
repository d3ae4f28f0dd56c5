"""Mermaid state diagrams generated from the django-fsm-2 transition metadata.

``docs/state-machines.md`` is this module's output, checked by a test and by
``manage.py state_diagrams --check``, so the document cannot drift from the models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django_fsm import FSMFieldMixin

from masterdata.models import Account
from q2c.models import (
    Contract,
    ContractVersion,
    CreditNote,
    Invoice,
    Order,
    Payment,
    Quote,
    UsageRecord,
)

DOCUMENTED_MODELS: list[type[models.Model]] = [
    Order,
    Contract,
    ContractVersion,
    Invoice,
    Quote,
    Payment,
    CreditNote,
    UsageRecord,
    Account,
]
DOC_PATH = "docs/state-machines.md"

_HEADER = """\
# State machines

Generated from the django-fsm-2 transitions on the models by
`python manage.py state_diagrams --write`; do not edit by hand. A test
(and `manage.py state_diagrams --check`) fails when this file and the models disagree.

Arrow labels name the transition method. `[...]` is a condition that must hold (its
docstring); `requires app.permission` is the permission a person needs (system actors act
for the platform). Services run every transition through `core.transitions.transition_apply`,
which refuses an illegal one with a clear error and writes the history row.
"""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    name: str
    conditions: tuple[str, ...]
    permission: str
    returns: bool


def _condition_text(condition: Any) -> str:
    doc = (getattr(condition, "__doc__", None) or "").strip()
    return " ".join(doc.split()) or condition.__name__.lstrip("_").replace("_", " ")


def _permission_text(permission: Any) -> str:
    if not permission:
        return ""
    if callable(permission):
        doc = (getattr(permission, "__doc__", None) or "").strip()
        return " ".join(doc.split()) or permission.__name__.lstrip("_").replace("_", " ")
    return str(permission)


def _declared_at(method: Any) -> int:
    code = getattr(method, "__code__", None)
    return code.co_firstlineno if code is not None else 0


def _fsm_field(model: type[models.Model]) -> FSMFieldMixin:
    fields = [f for f in model._meta.concrete_fields if isinstance(f, FSMFieldMixin)]
    if len(fields) != 1:
        raise ValueError(f"{model.__name__} has {len(fields)} state fields, expected one")
    return fields[0]


def edges(model: type[models.Model]) -> list[Edge]:
    """Every (source, target) pair of every transition, in the order they are declared."""
    field = _fsm_field(model)
    states = [str(value) for value, _ in (field.choices or [])]
    result: list[Edge] = []
    declared = sorted(
        field.get_all_transitions(model),
        key=lambda t: (_declared_at(t.method), t.name),
    )
    for transition in declared:
        sources = states if transition.source in ("*", "+") else [str(transition.source)]
        target = transition.target
        allowed = getattr(target, "allowed_states", None)
        targets = [str(state) for state in allowed] if allowed is not None else [str(target)]
        for source in sources:
            if transition.source == "+" and source in targets:
                continue
            for state in targets:
                result.append(
                    Edge(
                        source=source,
                        target=state,
                        name=transition.name,
                        conditions=tuple(_condition_text(c) for c in transition.conditions),
                        permission=_permission_text(transition.permission),
                        returns=allowed is not None,
                    )
                )
    return result


def _label(edge: Edge) -> str:
    parts = [edge.name]
    parts += [f"[{text}]" for text in edge.conditions]
    if edge.permission:
        parts.append(f"requires {edge.permission}")
    # Mermaid ends a label at ';' or '#'; keep labels to plain text.
    return "<br/>".join(part.replace(";", ",").replace("#", "") for part in parts)


def _diagram(model: type[models.Model]) -> list[str]:
    field = _fsm_field(model)
    labels = {str(value): str(label) for value, label in (field.choices or [])}
    model_edges = edges(model)
    lines = ["```mermaid", "stateDiagram-v2"]
    for value, label in labels.items():
        lines.append(f'    state "{label}" as {value}')
    lines.append(f"    [*] --> {field.get_default()}")
    for edge in model_edges:
        lines.append(f"    {edge.source} --> {edge.target}: {_label(edge)}")
    with_exits = {edge.source for edge in model_edges}
    for value in labels:
        if value not in with_exits:
            lines.append(f"    {value} --> [*]")
    lines.append("```")
    return lines


def _table(model: type[models.Model]) -> list[str]:
    rows: dict[str, dict[str, Any]] = {}
    for edge in edges(model):
        row = rows.setdefault(
            edge.name,
            {"sources": [], "targets": [], "edge": edge},
        )
        if edge.source not in row["sources"]:
            row["sources"].append(edge.source)
        if edge.target not in row["targets"]:
            row["targets"].append(edge.target)
    lines = [
        "| transition | from | to | conditions | permission |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        first: Edge = row["edge"]
        to = _codes(row["targets"])
        if first.returns:
            to = f"one of {to} (returned by the method)"
        lines.append(
            f"| `{name}` | {_codes(row['sources'])} | {to} | "
            f"{'; '.join(first.conditions) or '—'} | "
            f"{f'`{first.permission}`' if first.permission else '—'} |"
        )
    return lines


def _codes(values: Iterable[str]) -> str:
    return ", ".join(f"`{value}`" for value in values)


def state_diagrams_markdown(models_: list[type[models.Model]] | None = None) -> str:
    """The whole ``docs/state-machines.md``: one section per model with a diagram and table."""
    out = [_HEADER]
    for model in models_ or DOCUMENTED_MODELS:
        field = _fsm_field(model)
        doc = (model.__doc__ or "").strip()
        out.append(f"## {model.__name__}")
        out.append("")
        out.append(
            f"`{model._meta.label}.{field.name}`"
            + (f": {doc}" if doc and not doc.startswith(f"{model.__name__}(") else "")
        )
        out.append("")
        out.extend(_diagram(model))
        out.append("")
        out.extend(_table(model))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
