"""The API's request parsers (DRF resolves them from settings, so they live apart from
core.api, which imports DRF's views)."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.params import json_depth


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind a depth limit checked before parsing (``API_MAX_JSON_DEPTH``):
    deeply nested JSON is a 400, never a ``RecursionError``."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        if json_depth(raw) > settings.API_MAX_JSON_DEPTH:
            raise ParseError(f"JSON nested deeper than {settings.API_MAX_JSON_DEPTH} levels")
        return super().parse(io.BytesIO(raw), media_type, parser_context)
