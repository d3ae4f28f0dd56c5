"""One way to run a state transition: checked, permitted, saved, audited.

Services call ``transition_apply`` instead of calling transition methods themselves, so every
transition in Tandem is refused the same way (a clear message), checks the same permission
(people need it, system actors act for the platform) and leaves a history row with the actor
and the reason, inside one transaction.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django_fsm import ConcurrentTransition, has_transition_perm

from core.audit import Actor, audit_context
from core.errors import ConditionFailed, ReasonRequired, Refused, TransitionRefused

M = TypeVar("M", bound=models.Model)


def _transition_meta(record: models.Model, name: str) -> Any:
    method = getattr(type(record), name, None)
    meta = getattr(method, "_django_fsm", None)
    if meta is None:
        raise ValueError(f"{type(record).__name__}.{name} is not a transition")
    return meta


def transition_sources(record: models.Model, name: str) -> list[str]:
    """The states transition ``name`` of ``record``'s model is allowed from, sorted."""
    meta = _transition_meta(record, name)
    return sorted(str(source) for source in meta.transitions if source != "*")


def transition_check(record: models.Model, name: str, *, actor: Actor) -> None:
    """Raise unless ``actor`` may run transition ``name`` on ``record`` right now.

    Refuses with ``TransitionRefused`` (not allowed from the record's state) or
    ``ConditionFailed`` (allowed, but a precondition is unmet; the message names it); raises
    ``PermissionDenied`` when a person lacks the transition's permission (system actors act
    for the platform). A name that is not a transition is a bug (``ValueError``)."""
    meta = _transition_meta(record, name)
    state = getattr(record, meta.field.attname)
    if not meta.has_transition(state):
        raise TransitionRefused(
            record=record, transition=name, state=state, allowed=transition_sources(record, name)
        )
    if not meta.conditions_met(record, state):
        tr = meta.get_transition(state)
        unmet = [
            getattr(condition, "__doc__", None) or condition.__name__.lstrip("_").replace("_", " ")
            for condition in tr.conditions
            if not condition(record)
        ]
        raise ConditionFailed(record=record, transition=name, state=state, unmet=unmet)
    if not actor.is_system and not has_transition_perm(getattr(record, name), actor.user):
        raise PermissionDenied(f"{actor.name} may not '{name}' {record}")


def transition_apply(record: M, name: str, *, actor: Actor, reason: str, **kwargs: Any) -> M:
    """Run transition ``name`` on ``record`` and save it with history (actor, reason), in one
    transaction (or the caller's). Returns ``record``, moved.

    Refuses a blank reason (``ReasonRequired``) and whatever ``transition_check`` refuses.
    ``record`` is saved as loaded: if another worker moved it since, the save is refused
    (``Refused``, kind ``CONFLICT``, from ``django_fsm.ConcurrentTransition``) and this
    transaction rolls back.
    """
    if not reason or not reason.strip():
        raise ReasonRequired(f"a reason is required to '{name}' {record}")
    transition_check(record, name, actor=actor)
    try:
        with transaction.atomic(), audit_context(actor=actor, reason=reason):
            getattr(record, name)(**kwargs)
            record.save()
    except ConcurrentTransition as exc:
        raise Refused(
            f"{record} was changed by someone else meanwhile; read it again and retry",
            kind=Refused.Kind.CONFLICT,
        ) from exc
    return record
