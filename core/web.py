"""What every console view stands on: the page size, the htmx-aware request type, the
permission check each page takes from the navigation table (core.navigation), and the
security headers of every answer."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_cache_control, patch_vary_headers
from django_htmx.middleware import HtmxDetails

from core.navigation import PAGE_BY_NAME

PAGE_SIZE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def page_permission(url_name: str):  # type: ignore[no-untyped-def]
    """Require the permission the navigation table gives the page (403 naming the page,
    never a redirect)."""
    page = PAGE_BY_NAME[url_name]

    def decorate(view):  # type: ignore[no-untyped-def]
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if page.permission and not request.user.has_perm(page.permission):
                raise PermissionDenied(f"your role may not open {page.title}")
            return view(request, *args, **kwargs)  # type: ignore[no-any-return]

        return login_required(checked)

    return decorate


class HtmxVaryMiddleware:
    """A page and its htmx partial share one URL: say the answer varies on ``HX-Request``,
    so Back or a reload never shows a cached partial as the page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        return response


# Everything the console loads is its own (htmx is served from static/, the dashboard's charts
# are inline SVG markup, never script): no inline script or style, no other origin, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class SecurityHeadersMiddleware:
    """A strict Content-Security-Policy on every answer, and ``Cache-Control: no-store`` on
    every answer to a signed-in person (a shared or back-button cache must not keep records)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, no_store=True, private=True)
        return response
