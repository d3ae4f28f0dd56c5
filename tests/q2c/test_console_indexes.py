"""The indexes of the console_indexes migrations serve the queries the list pages run.

The planner is asked with sequential scans and sorts (for the trigram indexes, plain index
scans) switched off: on a test-sized table it would rather read everything, but at a million rows
(bench/console.py) these are the plans it picks. A renamed column or a query written
differently (e.g. an ``icontains`` the trigram expression no longer matches) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from exceptions import selectors as exception_selectors
from masterdata.models import Account
from q2c import selectors

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
