"""The indexes of the console_indexes migrations serve the queries the list pages run.

The planner is asked with sequential scans and sorts (for the trigram indexes, plain index
scans) switched off: on a test-sized table it would rather read everything, but at a million rows
(bench/console.py) these are the plans it picks. A renamed column or a query written
differently (e.g. an ``icontains`` the trigram expression no longer matches) fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.selectors import audit as audit_selectors
from console.selectors import dashboard
from console.selectors import records as selectors
from exceptions import selectors as exception_selectors
from masterdata.models import Account
from q2c.models import Order

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the trigram indexes exist on PostgreSQL only"
)


def plan_of(qs: Any, *, bitmap_only: bool = False) -> str:
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if bitmap_only:
            cursor.execute("SET LOCAL enable_indexscan = off")
        else:
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "list_of, index",
    [
        (
            lambda: selectors.order_list(filters=selectors.RecordFilters(state="active")),
            "order_state_created_idx",
        ),
        (
            lambda: selectors.contract_list(filters=selectors.RecordFilters(state="active")),
            "contract_state_created_idx",
        ),
        (lambda: selectors.invoice_list(state="active"), "invoice_state_created_idx"),
    ],
)
def test_a_list_filtered_by_state_reads_newest_first_from_its_index(list_of, index):
    # given
    qs = list_of()[:50]
    # when
    plan = plan_of(qs)
    # then
    assert f"Index Scan using {index}" in plan
    assert "Sort" not in plan


@pytest.mark.django_db
def test_the_open_queue_reads_newest_first_from_the_partial_index():
    # given
    qs = exception_selectors.exception_list(filters=exception_selectors.ExceptionFilters())[:50]
    # when
    plan = plan_of(qs)
    # then
    assert "Index Scan using exception_open_created_idx" in plan
    assert "Sort" not in plan


@pytest.mark.django_db
def test_account_search_uses_the_trigram_indexes_for_name_and_id():
    # given
    query = "acme"
    qs = Account.objects.filter(legal_name__icontains=query) | Account.objects.filter(
        enterprise_id__icontains=query
    )
    # when
    plan = plan_of(qs, bitmap_only=True)
    # then
    assert "Bitmap Index Scan on account_legal_name_trgm" in plan
    assert "Bitmap Index Scan on account_eid_trgm" in plan


# On empty test tables the planner would read anything; these leave it the index reads only,
# and prefer plans that need no sort (as it does at a million rows).
INDEX_ONLY_SETTINGS = ("enable_seqscan", "enable_bitmapscan", "enable_sort", "enable_hashagg")


def index_plan_of(qs: Any, settings: tuple[str, ...] = INDEX_ONLY_SETTINGS) -> str:
    """The plan with sequential and bitmap scans off: what remains is an index read, or the
    query cannot be answered from an index."""
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        for setting in settings:
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute("ANALYZE q2c_order")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
def test_dashboard_stuck_counts_read_each_state_on_its_own_index_range():
    # given
    model = Order
    qs = dashboard.stuck_counts_query(model, now=timezone.now())
    # when
    plan = index_plan_of(qs, settings=("enable_seqscan", "enable_bitmapscan"))
    # then: one index read per state with an SLA, each on its state's range, no OR across
    # states (which made PostgreSQL fetch every stuck row from the table). Which of the
    # state-led indexes serves it is the planner's pick on empty tables; at a million
    # orders it is (state, state_changed_at), index-only.
    states = len(selectors.state_sla(model))
    # The planner prints the condition as "((state)::text = 'x'" or "((state = 'x'::text)".
    assert len(re.findall(r"Index Cond: \(\(\(?state\)?(?:::text)? = '", plan)) == states
    assert " OR " not in plan


@pytest.mark.django_db
def test_dashboard_open_exceptions_are_counted_from_the_partial_team_index():
    # given
    qs = dashboard.open_exceptions_query(now=timezone.now())
    # when
    plan = index_plan_of(qs)
    # then
    assert "Index Only Scan using exception_open_team_idx" in plan


@pytest.mark.django_db
def test_open_exception_groups_are_aggregated_from_the_partial_group_index():
    # given
    qs = exception_selectors.exception_groups(filters=exception_selectors.ExceptionFilters())
    # when
    plan = index_plan_of(qs)
    # then
    assert "Index Only Scan using exception_open_group_idx" in plan


@pytest.mark.django_db
def test_a_group_example_is_the_end_of_its_fingerprint_range():
    # given
    groups = [{"fingerprint": "a" * 32}, {"fingerprint": "b" * 32}]
    filters = exception_selectors.ExceptionFilters(states=())
    # when
    with CaptureQueriesContext(connection) as captured:
        exception_selectors.exception_group_examples(filters=filters, groups=groups)
    with connection.cursor() as cursor:
        for setting in INDEX_ONLY_SETTINGS:
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(f"EXPLAIN {captured[0]['sql']}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then: one query, each fingerprint's newest row read from the index
    assert len(captured) == 1
    assert plan.count("Index Scan using exception_fp_created_idx") == 2
    assert "Limit" in plan


@pytest.mark.django_db
def test_the_audit_trail_by_actor_reads_that_actors_index_range():
    # given
    tracked = audit_selectors.tracked_model("q2c.order")
    assert tracked is not None
    flt = audit_selectors.HistoryFilter(actor="farah.haddad")
    qs = audit_selectors._history_queryset(tracked, flt, system_ids=None, actor_id=7)
    # when
    plan = index_plan_of(qs[:51])
    # then: the (history_user, history_date) index, not a join of every row to its user
    assert "Index Scan Backward using q2c_histori_history_" in plan
    assert "Index Cond: (history_user_id = 7)" in plan


@pytest.mark.django_db
def test_dashboard_cycle_times_and_invoice_rate_read_their_windows_from_covering_indexes():
    # given
    now = timezone.now()
    # when
    with CaptureQueriesContext(connection) as captured:
        dashboard.cycle_times(now=now)
        dashboard.invoice_exception_rate(now=now)
    plans = []
    with connection.cursor() as cursor:
        for setting in INDEX_ONLY_SETTINGS:
            cursor.execute(f"SET LOCAL {setting} = off")
        for query in captured:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    # then: one query each, the window read without the table
    assert len(plans) == 2
    assert "Index Only Scan using order_activated_cycle_idx" in plans[0]
    assert "Index Only Scan using invoice_created_order_idx" in plans[1]


@pytest.mark.django_db
def test_connections_run_without_jit():
    # given: a connection opened with the project's database settings
    with connection.cursor() as cursor:
        # when
        cursor.execute("SHOW jit")
        (jit,) = cursor.fetchone()
    # then: no compilation of the console's reads (1-2 s each at a million orders)
    assert jit == "off"
