"""Values read from a query string or a form, strictly: what is not exactly what a page
expects is None (the page then answers 400 or ignores it), never an exception deeper down.

``str.isdigit`` accepts ``²`` and Arabic-Indic digits (which ``int`` refuses or reads), and an id
of 20 digits overflows PostgreSQL's bigint: ids are 1 to 18 ASCII digits here.
"""

from __future__ import annotations

import datetime as dt
import re

_ID = re.compile(r"[0-9]{1,18}")
# A day both ends of a range can be built from (the day after it included) in any zone.
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)


def id_from(value: str | None) -> int | None:
    """A primary key: 1 to 18 ASCII digits, else None."""
    return int(value) if value and _ID.fullmatch(value) else None


def date_from(value: str | None) -> dt.date | None:
    """An ISO date (YYYY-MM-DD, ASCII) between 1900 and 9998, else None."""
    if not value or not value.isascii():
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """How deeply ``raw``'s arrays and objects nest, read without parsing it (brackets inside
    strings do not count), so a hostile body cannot exhaust the parser's recursion."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest
