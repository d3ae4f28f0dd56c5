"""Files people open in a spreadsheet: cells that a spreadsheet would run as a formula.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)`` typed as a reason, an id uploaded in
a file). Such a cell is written with a leading apostrophe, which the spreadsheet shows as text;
a plain number (``-12.50``) is left alone: it cannot be a formula.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def spreadsheet_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text, never runs."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def spreadsheet_row(values: Iterable[object]) -> list[str]:
    return [spreadsheet_cell(value) for value in values]


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """``rows`` as CSV lines, every cell through ``spreadsheet_cell``: for a streamed export."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(spreadsheet_row(row))
