from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from core.navigation import visible_pages
from core.roles import role_of


def console(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"console_role": role_of(user), "console_nav": visible_pages(user)}
