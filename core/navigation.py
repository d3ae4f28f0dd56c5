"""The console's pages and the permission each needs: one table, read by the navigation,
the views' checks and the permission-matrix tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    url_name: str
    title: str
    permission: str  # "" means any signed-in user with a role
    in_nav: bool = True  # False: reached from another page, not listed in the navigation


PAGES = [
    Page("home", "Home", ""),
    Page("dashboard", "Dashboard", "q2c.view_order"),
    Page("order-list", "Orders", "q2c.view_order"),
    Page("contract-list", "Contracts", "q2c.view_contract"),
    Page("invoice-list", "Invoices", "q2c.view_invoice"),
    Page("account-list", "Accounts", "masterdata.view_account"),
    Page("duplicate-list", "Duplicates", "masterdata.view_duplicatecandidate"),
    Page(
        "duplicate-groups", "Duplicate groups", "masterdata.view_duplicatecandidate", in_nav=False
    ),
    Page("match-file", "Match a file", "masterdata.merge_account", in_nav=False),
    Page("merge-list", "Merges", "masterdata.view_mergerecord"),
    Page("exception-list", "Exceptions", "exceptions.view_operationalexception"),
    Page("replay-list", "Replays", "exceptions.view_replay"),
    Page("reconciliation", "Reconciliation", "orchestration.view_driftitem"),
    Page(
        "reconciliation-books", "Bookings vs billings", "orchestration.view_driftitem", in_nav=False
    ),
    Page("reconciliation-export", "Drift export", "orchestration.view_driftitem", in_nav=False),
    Page("dead-letter-list", "Dead letters", "orchestration.view_inboundevent"),
    # Audit pages: each person sees the history of the models they may view.
    Page("audit-history", "Audit", ""),
    Page("audit-operators", "Operator actions", "", in_nav=False),
    Page("audit-as-of", "Record as of", "", in_nav=False),
    Page("audit-export", "Audit export", "", in_nav=False),
]
PAGE_BY_NAME = {page.url_name: page for page in PAGES}


def may_see(user: Any, page: Page) -> bool:
    """Whether a signed-in ``user`` holds the permission ``page`` needs (if any)."""
    return bool(user.is_authenticated) and (not page.permission or user.has_perm(page.permission))


def visible_pages(user: Any) -> list[Page]:
    """The navigation entries ``user`` may see, in menu order."""
    return [page for page in PAGES if page.in_nav and may_see(user, page)]
