"""Pagination for lists over tables with millions of rows.

Django's Paginator runs ``SELECT COUNT(*)`` over the whole filtered list on every page. On a
million orders that count is the slowest query of the page (it reads every row, or every
index entry), and its answer only feeds "page 1 of 20,000": nobody pages that far, they
filter. ``BoundedPaginator`` counts at most ``COUNT_LIMIT`` rows (``COUNT(*)`` over a
``LIMIT``-ed subquery), so a list costs the same on a thousand rows or a million; past the
limit the pager says "of 200+" and the last reachable page is the limit's.

Deep pages (``OFFSET`` of ``deferred_from`` rows or more) are read in two steps: the page's
primary keys first (the skipped rows are walked on an index, joined to nothing), then those
50 rows with their related rows. One query more, but PostgreSQL no longer joins the
customer and legal entity of every skipped row (page 150 of the orders: 270 ms before).
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property
from rest_framework.pagination import LimitOffsetPagination

# 200 pages of 50: far more than anyone pages through, cheap to count on an index.
COUNT_LIMIT = 10_000
# The most rows one API page returns, whatever ``limit`` asks for.
MAX_API_LIMIT = 500
DEFERRED_FROM = 1_000


class BoundedPaginator(Paginator):
    """A Paginator whose count stops at ``limit`` rows; ``capped`` tells whether it did."""

    def __init__(
        self,
        object_list: Any,
        per_page: int,
        *,
        limit: int = COUNT_LIMIT,
        deferred_from: int = DEFERRED_FROM,
    ) -> None:
        super().__init__(object_list, per_page)
        self.limit = limit
        self.deferred_from = deferred_from

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        qs: Any = self.object_list
        model_rows = isinstance(qs, QuerySet) and qs._fields is None  # type: ignore[attr-defined]
        if bottom < self.deferred_from or not model_rows:
            return super().page(number)
        top = min(bottom + self.per_page, self.count)
        pks = list(qs.values_list("pk", flat=True)[bottom:top])
        by_pk = {row.pk: row for row in qs.filter(pk__in=pks)}
        rows = [by_pk[pk] for pk in pks if pk in by_pk]
        return self._get_page(rows, number, self)  # type: ignore[attr-defined]

    @cached_property
    def _bounded_count(self) -> tuple[int, bool]:
        # Unordered: the number is the same, and the planner may then pick any index (a
        # bitmap over a search's matches) instead of walking the list's sort order.
        if not isinstance(self.object_list, QuerySet):  # rows already read (a list)
            found = len(self.object_list)
            return min(found, self.limit), found > self.limit
        found = self.object_list.order_by()[: self.limit + 1].count()
        return min(found, self.limit), found > self.limit

    @cached_property
    def count(self) -> int:
        return self._bounded_count[0]

    @property
    def capped(self) -> bool:
        """True when more rows match than were counted (the last page is not the end)."""
        return self._bounded_count[1]


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """The API's default paging: ``limit`` is capped at ``MAX_API_LIMIT`` (a bigger one reads
    that many), so no client can ask for a whole table in one answer."""

    max_limit = MAX_API_LIMIT
