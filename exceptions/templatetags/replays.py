"""Template filters of the replay pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def pretty_json(payload: Any) -> str:
    """A payload as the replay pages show it: indented JSON with sorted keys."""
    return json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str)
