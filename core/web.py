"""What every console view stands on: the page size, the htmx-aware request type, the
permission check each page takes from the navigation table (core.navigation), and the
security headers of every answer."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.cache import patch_cache_control
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
