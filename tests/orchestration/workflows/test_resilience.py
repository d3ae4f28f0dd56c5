"""The circuit breaker: its hot path (a closed breaker, a successful call) takes no lock and
writes nothing, and within a second of reading a clean row reads none; every other path still
goes through the locked row."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.workflows.models import CircuitBreaker, CircuitState
from orchestration.workflows.resilience import circuit_allow, circuit_record


@pytest.mark.django_db
def test_a_success_on_a_closed_breaker_reads_one_row_and_writes_nothing():
    # given
    CircuitBreaker.objects.create(system="erp")
    # when
    with CaptureQueriesContext(connection) as queries:
        allowed = circuit_allow(system="erp")
        state = circuit_record(system="erp", ok=True)
    # then
    assert allowed is None
    assert state == CircuitState.CLOSED
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements == ["SELECT"]  # the success remembers what the check just read
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db
def test_a_clean_breaker_read_within_its_time_is_not_read_again(settings):
    # given
    settings.CIRCUIT_CLEAN_CACHE_SECONDS = 60
    CircuitBreaker.objects.create(system="erp")
    circuit_allow(system="erp")
    # when
    with CaptureQueriesContext(connection) as queries:
        allowed = [circuit_allow(system="erp"), circuit_allow(system="erp")]
        state = circuit_record(system="erp", ok=True)
    # then
    assert (allowed, state) == ([None, None], CircuitState.CLOSED)
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_a_failure_this_process_records_is_seen_by_its_next_check_at_once(settings):
    # given
    settings.CIRCUIT_CLEAN_CACHE_SECONDS = 60
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    settings.CIRCUIT_OPEN_SECONDS = 30
    CircuitBreaker.objects.create(system="billing")
    circuit_allow(system="billing")  # remembered clean
    now = timezone.now()
    # when
    circuit_record(system="billing", ok=False, error="503", now=now)
    blocked_for = circuit_allow(system="billing", now=now + dt.timedelta(seconds=5))
    # then
    assert blocked_for == pytest.approx(25.0)
    assert CircuitBreaker.objects.get(system="billing").state == CircuitState.OPEN


@pytest.mark.django_db
def test_a_breaker_opened_elsewhere_is_seen_once_the_remembered_time_is_over(settings):
    # given
    settings.CIRCUIT_CLEAN_CACHE_SECONDS = 0  # nothing remembered: every check reads the row
    CircuitBreaker.objects.create(system="tax")
    circuit_allow(system="tax")
    now = timezone.now()
    CircuitBreaker.objects.filter(system="tax").update(  # another worker opened it
        state=CircuitState.OPEN, consecutive_failures=5, open_until=now + dt.timedelta(seconds=30)
    )
    # when
    blocked_for = circuit_allow(system="tax", now=now)
    # then
    assert blocked_for == pytest.approx(30.0)


@pytest.mark.django_db
def test_a_failure_is_counted_under_the_lock_and_a_later_success_clears_it(settings):
    # given
    settings.CIRCUIT_FAILURE_THRESHOLD = 3
    # when
    circuit_record(system="billing", ok=False, error="500")
    failed = CircuitBreaker.objects.get(system="billing")
    circuit_record(system="billing", ok=True)
    cleared = CircuitBreaker.objects.get(system="billing")
    # then
    assert (failed.state, failed.consecutive_failures, failed.last_failure) == (
        CircuitState.CLOSED,
        1,
        "500",
    )
    assert (cleared.state, cleared.consecutive_failures) == (CircuitState.CLOSED, 0)


@pytest.mark.django_db
def test_an_open_breaker_lets_exactly_one_trial_through_once_it_is_due(settings):
    # given
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    settings.CIRCUIT_OPEN_SECONDS = 30
    settings.STEP_LEASE_SECONDS = 15
    now = timezone.now()
    circuit_record(system="tax", ok=False, error="timeout", now=now)
    # when
    early = circuit_allow(system="tax", now=now + dt.timedelta(seconds=10))
    trial = circuit_allow(system="tax", now=now + dt.timedelta(seconds=31))
    second = circuit_allow(system="tax", now=now + dt.timedelta(seconds=31))
    # then
    assert early == pytest.approx(20.0)
    assert trial is None
    assert second == pytest.approx(15.0)  # half-open: the trial has a lease to report
    assert CircuitBreaker.objects.get(system="tax").state == CircuitState.HALF_OPEN


@pytest.mark.django_db
def test_a_half_open_breaker_whose_trial_never_reports_lets_another_trial_through(settings):
    # given: the trial's worker was killed mid-call, so no outcome is ever recorded
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    settings.CIRCUIT_OPEN_SECONDS = 1
    settings.STEP_LEASE_SECONDS = 15
    now = timezone.now()
    circuit_record(system="billing", ok=False, error="429", now=now)
    lost_trial = circuit_allow(system="billing", now=now + dt.timedelta(seconds=2))
    # when
    within_lease = circuit_allow(system="billing", now=now + dt.timedelta(seconds=16))
    next_trial = circuit_allow(system="billing", now=now + dt.timedelta(seconds=18))
    after_it = circuit_allow(system="billing", now=now + dt.timedelta(seconds=18))
    circuit_record(system="billing", ok=True, now=now + dt.timedelta(seconds=19))
    # then
    assert lost_trial is None
    assert within_lease == pytest.approx(1.0)
    assert next_trial is None
    assert after_it == pytest.approx(15.0)
    breaker = CircuitBreaker.objects.get(system="billing")
    assert (breaker.state, breaker.consecutive_failures) == (CircuitState.CLOSED, 0)
