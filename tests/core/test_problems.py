"""Problems raised outside a workflow reach the exception queue through the registered sink."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from core import problems
from core.problems import Category, Problem, Severity, Team, problem_raise
from exceptions.models import ExceptionState, OperationalException


@pytest.mark.django_db
def test_a_problem_becomes_an_open_exception_owned_by_its_category_team(system_actor):
    # given
    problem = Problem(
        category=Category.MAPPING,
        message="product PRD-000009 has no billing mapping",
        error_class="MappingMissing",
        system="billing",
        step="reconcile",
        severity=Severity.HIGH,
        correlation_id="PRD-000009",
        context={"product": "PRD-000009"},
    )
    before = timezone.now()
    # when
    (exc,) = problem_raise(problem, actor=system_actor, reason="nightly reconciliation")
    # then
    stored = OperationalException.objects.get()
    assert stored == exc
    assert (stored.category, stored.owner_team, stored.severity, stored.state) == (
        Category.MAPPING, Team.DATA_STEWARD, Severity.HIGH, ExceptionState.OPEN,
    )  # fmt: skip
    assert (stored.system, stored.step, stored.error_class, stored.correlation_id) == (
        "billing", "reconcile", "MappingMissing", "PRD-000009",
    )  # fmt: skip
    assert stored.context == {"product": "PRD-000009"}
    assert before + dt.timedelta(hours=24) <= stored.sla_due_at
    assert stored.history.get().history_change_reason == "nightly reconciliation"


@pytest.mark.django_db
def test_an_unknown_category_is_refused_and_nothing_is_stored(system_actor):
    # given
    problem = Problem(category="weather", message="rain", error_class="Rain")
    # when
    with pytest.raises(ValueError, match="unknown problem category 'weather'"):
        problem_raise(problem, actor=system_actor)
    # then
    assert not OperationalException.objects.exists()


def test_with_no_sink_registered_a_problem_is_refused_not_dropped(monkeypatch, system_actor):
    # given
    monkeypatch.setattr(problems, "_sinks", [])
    problem = Problem(category=Category.TAX, message="no tax engine", error_class="X")
    # when / then
    with pytest.raises(RuntimeError, match="no problem sink is registered"):
        problem_raise(problem, actor=system_actor)
