"""``{% saved_views %}``: under a list's filter bar, the person's saved views of that list
(links) and a form saving the filters shown now under a name."""

from __future__ import annotations

from typing import Any

from django import template

from console.saved_views import saved_views_for

register = template.Library()


@register.inclusion_tag("console/_saved_views.html", takes_context=True)
def saved_views(context: Any) -> dict[str, Any]:
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {"show": False}
    return {
        "show": True,
        "views": saved_views_for(user=request.user, path=request.path),
        "here": request.get_full_path(),
        "csrf_token": context.get("csrf_token"),
    }
