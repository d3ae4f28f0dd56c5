"""Polling with a persisted cursor: every change stored once, the cursor moved only with it.

The polled system is a small in-memory stand-in (the edge); the cursor rows, the inbound
events and their uniqueness are the real ones on PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from orchestration.connectors.errors import RetryableError
from orchestration.connectors.interfaces import PollBatch
from orchestration.events.polling import poll_cursor_run, pollable_systems
from orchestration.models import InboundEvent, PollCursor
from orchestration.tasks import poll_systems

pytestmark = pytest.mark.django_db


def change(number: int) -> dict[str, Any]:
    return {
        "event_id": f"sale-{number}-accepted",
        "event_type": "order.accepted",
        "schema_version": 1,
        "occurred_at": "2026-01-05T10:15:00Z",
        "correlation_id": f"ORD-{number:06d}",
        "data": {
            "order_id": f"ORD-{number:06d}",
            "erp_sales_order_id": str(number),
            "accepted_at": "2026-01-05T10:15:00Z",
        },
    }


class ListSystem:
    """A system whose changes are a list; the cursor is how many were read; two per page."""

    changes: ClassVar[list[dict[str, Any]]] = []
    fail_on_page_from: ClassVar[int | None] = None
    reads: ClassVar[list[str]] = []

    def poll_streams(self) -> list[str]:
        return ["sales"]

    def poll(self, *, stream: str, cursor: str) -> PollBatch:
        start = int(cursor or 0)
        ListSystem.reads.append(cursor)
        if self.fail_on_page_from is not None and start >= self.fail_on_page_from:
            raise RetryableError("no answer within the timeout", system="erp", kind="timeout")
        page = self.changes[start : start + 2]
        return PollBatch(events=page, cursor=str(start + len(page)) if page else cursor)


@pytest.fixture
def system() -> ListSystem:
    ListSystem.changes = [change(n) for n in range(1, 6)]
    ListSystem.fail_on_page_from = None
    ListSystem.reads = []
    return ListSystem()


def stored_ids() -> list[str]:
    return list(InboundEvent.objects.order_by("pk").values_list("event_id", flat=True))


def test_a_poll_stores_every_change_once_and_moves_the_cursor(
    system: ListSystem, django_capture_on_commit_callbacks: Any
):
    # given
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        result = poll_cursor_run(system="erp", stream="sales", connector=system)
    # then
    assert (result.stored, result.duplicates, result.cursor, result.error) == (5, 0, "5", "")
    assert stored_ids() == [f"sale-{n}-accepted" for n in range(1, 6)]
    assert ListSystem.reads == ["", "2", "4", "5"]
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    assert (cursor.cursor, cursor.events_stored, cursor.consecutive_failures) == ("5", 5, 0)
    assert cursor.last_success_at == cursor.last_run_at
    event = InboundEvent.objects.get(event_id="sale-3-accepted")
    assert (event.system, event.status, event.signature_valid, event.correlation_id) == (
        "erp", "received", True, "ORD-000003",
    )  # fmt: skip
    assert event.headers == {"X-Tandem-Source": "poll:sales"}
    assert json.loads(event.raw_body) == change(3)
    assert len(callbacks) == 3  # one enqueue per committed page with events


def test_a_failed_read_leaves_the_cursor_where_it_was_and_is_recorded(system: ListSystem):
    # given
    ListSystem.fail_on_page_from = 2
    # when
    result = poll_cursor_run(system="erp", stream="sales", connector=system)
    # then
    assert (result.stored, result.cursor) == (2, "2")
    assert result.error == "RetryableError: erp timeout: no answer within the timeout"
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    assert (cursor.cursor, cursor.consecutive_failures, cursor.events_stored) == ("2", 1, 2)
    assert cursor.last_error == "RetryableError: erp timeout: no answer within the timeout"
    assert stored_ids() == ["sale-1-accepted", "sale-2-accepted"]


def test_a_restart_after_a_failure_goes_on_from_the_cursor_without_gaps_or_repeats(
    system: ListSystem,
):
    # given
    ListSystem.fail_on_page_from = 2
    poll_cursor_run(system="erp", stream="sales", connector=system)
    ListSystem.fail_on_page_from = None
    ListSystem.reads = []
    # when
    result = poll_cursor_run(system="erp", stream="sales", connector=system)
    # then
    assert (result.stored, result.duplicates, result.cursor, result.error) == (3, 0, "5", "")
    assert ListSystem.reads == ["2", "4", "5"]
    assert stored_ids() == [f"sale-{n}-accepted" for n in range(1, 6)]
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    assert (cursor.consecutive_failures, cursor.last_error, cursor.events_stored) == (0, "", 5)


def test_a_crash_while_storing_a_page_stores_none_of_it_and_keeps_the_cursor(
    system: ListSystem,
):
    # given: the second change of the second page cannot be stored
    broken = change(4)
    del broken["event_type"]
    ListSystem.changes[3] = broken
    # when
    result = poll_cursor_run(system="erp", stream="sales", connector=system)
    # then
    assert (result.stored, result.cursor, result.error) == (2, "2", "KeyError: 'event_type'")
    assert stored_ids() == ["sale-1-accepted", "sale-2-accepted"]  # not sale-3 of that page
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    assert (cursor.cursor, cursor.consecutive_failures) == ("2", 1)


def test_changes_read_again_from_an_older_cursor_are_absorbed(system: ListSystem):
    # given
    poll_cursor_run(system="erp", stream="sales", connector=system)
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    cursor.cursor = "1"  # the system re-sends from an earlier point (an overlapping cursor)
    cursor.save()
    # when
    result = poll_cursor_run(system="erp", stream="sales", connector=system)
    # then
    assert (result.stored, result.duplicates, result.cursor) == (0, 4, "5")
    assert InboundEvent.objects.count() == 5
    assert set(InboundEvent.objects.values_list("duplicate_deliveries", flat=True)) == {0}


class LateCommits(ListSystem):
    """A system where a change can appear behind the cursor; the look-back gives the last
    three changes before the cursor, as ``poll`` would give them."""

    rechecks: ClassVar[list[str]] = []

    def poll_recheck(self, *, stream: str, cursor: str) -> list[dict[str, Any]]:
        LateCommits.rechecks.append(cursor)
        end = int(cursor or 0)
        return self.changes[max(0, end - 3) : end]


def test_a_change_that_committed_behind_the_cursor_is_found_by_the_look_back_once(
    system: ListSystem, django_capture_on_commit_callbacks: Any
):
    # given: five changes polled, then one more commits late, at a place already passed
    late = LateCommits()
    LateCommits.rechecks = []
    poll_cursor_run(system="erp", stream="sales", connector=late)
    ListSystem.changes.insert(3, change(99))
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = poll_cursor_run(system="erp", stream="sales", connector=late)
    again = poll_cursor_run(system="erp", stream="sales", connector=late)
    # then: stored once, without moving the cursor back; the other re-read changes absorbed
    assert (result.stored, result.recovered, result.error) == (0, 1, "")
    assert (again.stored, again.recovered) == (0, 0)
    assert sorted(stored_ids()) == sorted([f"sale-{n}-accepted" for n in (1, 2, 3, 4, 5, 99)])
    assert LateCommits.rechecks == ["5", "6", "6"]
    cursor = PollCursor.objects.get(system="erp", stream="sales")
    assert (cursor.cursor, cursor.events_stored) == ("6", 6)
    assert len(callbacks) == 1  # the recovered event (the main pass read a repeat only)


def test_a_poll_that_lost_the_race_for_the_cursor_stores_nothing(system: ListSystem):
    # given: another poller moves the cursor while this one is reading
    class Racing(ListSystem):
        def poll(self, *, stream: str, cursor: str) -> PollBatch:
            batch = super().poll(stream=stream, cursor=cursor)
            PollCursor.objects.filter(system="erp", stream="sales").update(cursor="4")
            return batch

    # when
    result = poll_cursor_run(system="erp", stream="sales", connector=Racing())
    # then
    assert (result.stored, result.error) == (0, "")
    assert InboundEvent.objects.count() == 0
    assert PollCursor.objects.get(system="erp", stream="sales").cursor == "4"


def test_the_beat_task_polls_only_systems_whose_connector_can_be_polled(
    system: ListSystem, settings: Any
):
    # given
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = {
        **settings.TANDEM_CONNECTOR_IMPLEMENTATIONS,
        "erp": "tests.orchestration.events.test_polling.ListSystem",
    }
    # when
    new_events = poll_systems()
    # then
    assert pollable_systems() == ["erp"]
    assert new_events == 5
    assert list(PollCursor.objects.values_list("system", "stream", "cursor")) == [
        ("erp", "sales", "5")
    ]


def test_the_beat_schedule_runs_the_poll_task(settings: Any):
    # given
    # when
    entry = settings.CELERY_BEAT_SCHEDULE["poll-systems"]
    # then
    assert (entry["task"], entry["schedule"]) == ("orchestration.poll_systems", 30.0)
    assert poll_systems.name == "orchestration.poll_systems"
