"""Saved views: a person keeps a list's filters under a name and opens them again from the
filter bar. Only the console's lists can be saved (their URL is checked against them), each
person sees and deletes only their own."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.urls import Resolver404, resolve

from console.models import SavedView
from core.errors import Refused

# The lists whose filters live in the URL (one filter bar pattern on each).
LISTS = frozenset(
    {
        "order-list",
        "contract-list",
        "invoice-list",
        "exception-list",
        "replay-list",
        "account-list",
        "duplicate-list",
        "merge-list",
        "dead-letter-list",
        "reconciliation",
        "audit-history",
        "audit-operators",
    }
)
MAX_SAVED = 50  # per person


def list_path(path: str) -> bool:
    """Whether ``path`` is one of the lists a view can be saved for."""
    try:
        return resolve(path).url_name in LISTS
    except Resolver404:
        return False


def saved_view_save(*, user: Any, name: str, url: str) -> SavedView:
    """Save ``url`` (a list's path and query string, as the browser shows it) under ``name``
    for ``user``; saving again under the same name on the same list replaces the filters.
    Refuses an empty or long name, a URL that is not one of the lists, a query longer than
    1,000 characters, and more than 50 views per person (INVALID). One transaction."""
    name = " ".join(name.split())
    if not name or len(name) > 60:
        raise Refused("a saved view needs a name of 1 to 60 characters", kind=Refused.Kind.INVALID)
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("page="))
    if parts.scheme or parts.netloc or not list_path(parts.path):
        raise Refused("only the console's lists can be saved as views", kind=Refused.Kind.INVALID)
    if len(query) > 1000:
        raise Refused("these filters are too long to save", kind=Refused.Kind.INVALID)
    with transaction.atomic():
        existing = SavedView.objects.filter(user=user, path=parts.path, name=name).first()
        if existing is None and SavedView.objects.filter(user=user).count() >= MAX_SAVED:
            raise Refused(
                f"you have {MAX_SAVED} saved views already; delete one first",
                kind=Refused.Kind.INVALID,
            )
        try:
            view, _ = SavedView.objects.update_or_create(
                user=user, path=parts.path, name=name, defaults={"query": query}
            )
        except IntegrityError as exc:  # the same name saved at the same moment
            raise Refused(
                "this view was saved at the same moment; open the list again",
                kind=Refused.Kind.CONFLICT,
            ) from exc
    return view


def saved_view_delete(*, user: Any, pk: int) -> SavedView:
    """Delete one of ``user``'s saved views and return it (NOT_FOUND for anyone else's)."""
    with transaction.atomic():
        view = SavedView.objects.select_for_update().filter(user=user, pk=pk).first()
        if view is None:
            raise Refused("no such saved view of yours", kind=Refused.Kind.NOT_FOUND)
        view.delete()
    return view


def saved_views_for(*, user: Any, path: str) -> list[SavedView]:
    """``user``'s saved views of the list at ``path``, by name."""
    return list(SavedView.objects.filter(user_id=int(user.pk or 0), path=path))
