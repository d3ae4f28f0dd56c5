"""What every console view stands on: the page size, the htmx-aware request type, and the
permission check each page takes from the navigation table (core.navigation)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from core.navigation import PAGE_BY_NAME

PAGE_SIZE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def page_permission(url_name: str):  # type: ignore[no-untyped-def]
    """Require the permission the navigation table gives the page (403, never a redirect)."""
    perm = PAGE_BY_NAME[url_name].permission

    def decorate(view):  # type: ignore[no-untyped-def]
        view = permission_required(perm, raise_exception=True)(view) if perm else view
        return login_required(view)

    return decorate
