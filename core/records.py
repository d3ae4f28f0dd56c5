"""Building blocks shared by every canonical record."""

from __future__ import annotations

import datetime as dt
import operator
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, router
from django.db.models import F, Q, Value
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin

from core.errors import invalid_refused

SYSTEM_CHOICES = [
    ("crm", "CRM"),
    ("cpq", "CPQ"),
    ("billing", "Subscription billing"),
    ("erp", "ERP"),
    ("tax", "Tax"),
    ("payments", "Payments"),
]
SYSTEMS = [code for code, _ in SYSTEM_CHOICES]


class LineKind(models.TextChoices):
    RECURRING = "recurring", "Recurring"
    ONE_TIME = "one_time", "One-time"
    USAGE = "usage", "Usage"


class BillingPeriod(models.TextChoices):
    NONE = "", "None"
    MONTH = "month", "Monthly"
    QUARTER = "quarter", "Quarterly"
    YEAR = "year", "Yearly"


class CanonicalRecord(models.Model):
    """A record with an enterprise identifier that every system's copy is correlated by."""

    enterprise_id = models.CharField(max_length=20, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.enterprise_id


class StatefulRecord(CanonicalRecord):
    """A canonical record with a state machine: tracks when it entered its state."""

    state_changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        abstract = True

    def _entered_state(self) -> None:
        self.state_changed_at = timezone.now()


def record_full_clean(record: models.Model, *, exclude: list[str] | None = None) -> None:
    """``full_clean`` that leaves protected state fields alone (they refuse assignment).

    A record that does not validate is refused (``Refused``, kind ``INVALID``), its
    messages joined by '; '. Check constraints are evaluated in Python where their condition
    is a plain comparison of the record's own fields (``constraint_holds``), instead of one
    query and a savepoint each; the others go to the database as Django sends them."""
    from django_fsm import FSMFieldMixin

    skip = set(exclude or [])
    skip.update(f.name for f in record._meta.concrete_fields if isinstance(f, FSMFieldMixin))
    with invalid_refused():
        errors: dict[str, Any] = {}
        try:
            record.full_clean(exclude=sorted(skip), validate_constraints=False)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        # as full_clean does: a field that failed its own validation is left out of the
        # constraints, so one mistake is reported once
        skip.update(name for name in errors if name != NON_FIELD_ERRORS)
        try:
            _constraints_validate(record, exclude=skip)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)


def _constraints_validate(record: models.Model, *, exclude: set[str]) -> None:
    """``Model.validate_constraints``, with check constraints evaluated here when they can be."""
    using = router.db_for_write(type(record), instance=record)
    errors: dict[str, Any] = {}
    for model_class, constraints in record.get_constraints():
        for constraint in constraints:
            try:
                if isinstance(constraint, models.CheckConstraint):
                    against = record._get_field_expression_map(  # type: ignore[attr-defined]
                        meta=model_class._meta, exclude=exclude
                    )
                    holds = constraint_holds(constraint.condition, against)
                    if holds is False:
                        raise ValidationError(
                            constraint.get_violation_error_message(),
                            code=constraint.violation_error_code,
                        )
                    if holds is True:
                        continue
                constraint.validate(model_class, record, exclude=exclude, using=using)
            except ValidationError as exc:
                fields: tuple[str, ...] = tuple(getattr(constraint, "fields", ()))
                if getattr(exc, "code", None) == "unique" and len(fields) == 1:
                    errors.setdefault(fields[0], []).append(exc)
                else:
                    errors = exc.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


class _NotHere(Exception):
    """The condition needs the database to be evaluated."""


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "exact": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_ORDERED = (int, Decimal, dt.date, dt.datetime)  # compared in Python as the database would


def constraint_holds(condition: Any, against: dict[str, Any]) -> bool | None:
    """Whether a check constraint's ``condition`` holds for the field values ``against``
    (``Model._get_field_expression_map``), evaluated in Python: True or False, or None when
    only the database can tell (a lookup, a join or a value this does not compare), and the
    caller asks it. A condition naming a field left out of validation holds, as in Django.
    SQL's NULL logic is kept: a comparison with NULL is unknown, and unknown passes."""
    if not isinstance(condition, Q):
        return None  # an expression: the database evaluates it
    try:
        return _evaluate(condition, against) is not False
    except _Missing:
        return True
    except (_NotHere, TypeError):
        return None


class _Missing(Exception):
    """The condition names a field that is not being validated."""


def _operand(against: dict[str, Any], ref: Any) -> Any:
    if isinstance(ref, F):
        name = ref.name  # type: ignore[attr-defined]
        if name not in against:
            raise _Missing
        ref = against[name]
        if not isinstance(ref, Value):
            raise _NotHere
        return ref.value
    if hasattr(ref, "resolve_expression"):
        raise _NotHere
    return ref


def _evaluate(condition: Q, against: dict[str, Any]) -> bool | None:
    results: list[bool | None] = []
    for child in condition.children:
        if isinstance(child, Q):
            results.append(_evaluate(child, against))
            continue
        if not isinstance(child, tuple):
            raise _NotHere
        name, _, lookup = child[0].partition("__")
        lookup = lookup or "exact"
        left = _operand(against, F(name))
        right = _operand(against, child[1])
        if lookup == "exact" and right is None:
            lookup, right = "isnull", True
        if lookup == "isnull":
            results.append((left is None) == bool(right))
        elif lookup not in _COMPARISONS:
            raise _NotHere
        elif left is None or right is None:
            results.append(None)
        elif lookup != "exact" and not (isinstance(left, _ORDERED) and isinstance(right, _ORDERED)):
            raise _NotHere  # text ordering is the database's collation, not Python's
        else:
            results.append(bool(_COMPARISONS[lookup](left, right)))
    if condition.connector == Q.AND:
        outcome: bool | None = False if False in results else (None if None in results else True)
    elif condition.connector == Q.OR:
        outcome = True if True in results else (None if None in results else False)
    else:
        raise _NotHere
    if condition.negated and outcome is not None:
        outcome = not outcome
    return outcome


_refresh_lock = threading.RLock()


class ConcurrentTransitions(ConcurrentTransitionMixin):
    """django-fsm-2's optimistic locking, safe in a threaded worker.

    The library's ``refresh_from_db`` lifts the ``protected`` flag on the state field
    itself (shared by every instance in the process) and puts it back afterwards; two
    threads refreshing at once can put it back under each other and fail with "Direct
    state modification is not allowed". Refreshes are serialised here.
    """

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        with _refresh_lock:
            super().refresh_from_db(*args, **kwargs)
