"""Matching a CSV file with the same pipeline: within itself, or against the accounts.

What a steward does with a legacy system's export before a migration: which of its rows are
one organisation, and which are already customers. The caller names which column holds
each account field (``legal_name=Site name,address_line1=Address,...``) and the id column;
the answer is the pairs at or above the threshold (``id_a,id_b,score,cluster``) and a
summary. A bad file is refused with a message saying what to fix, before any matching.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from core.errors import Refused
from core.exports import spreadsheet_row
from masterdata.matching.normalize import Record, record
from masterdata.matching.pipeline import MatchResult, ScoredPair, match

# The account fields a column may be mapped to; legal_name is required.
FIELDS = (
    "legal_name", "address_line1", "address_line2", "city", "postcode", "phone", "tax_id",
    "domain", "email", "country",
)  # fmt: skip
MAX_FIELD = 1000  # characters in one cell


class FileRefused(Refused):
    """The file or the options cannot be matched; the message says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind=Refused.Kind.INVALID)


def mapping_parse(text: str) -> dict[str, str]:
    """'legal_name=Site name,postcode=Zip' → {'legal_name': 'Site name', 'postcode': 'Zip'}."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, column = item.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not column:
            raise FileRefused(f"--map entry {item.strip()!r} is not FIELD=COLUMN")
        if name not in FIELDS:
            raise FileRefused(f"--map names an unknown field {name!r}; known: {', '.join(FIELDS)}")
        if name in mapping:
            raise FileRefused(f"--map names {name} twice")
        mapping[name] = column
    if "legal_name" not in mapping:
        raise FileRefused("--map must say which column holds legal_name")
    return mapping


@dataclass
class FileRecords:
    records: list[Record]
    ids: dict[int, str]  # record pk → the id the file (or the account) gives it
    names: dict[int, str]  # record pk → its name as written, for the screens
    from_file: int  # records read from the file (pks 1..from_file)


def _text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8"
        ) from exc


def read_file(
    raw: bytes | str | IO[str],
    *,
    mapping: dict[str, str],
    id_column: str,
    country: str = "",
    max_rows: int = 200_000,
) -> FileRecords:
    """The file's rows as records (pk 1, 2, … in file order), checked first: a header with
    every mapped column and the id column, ids present and unique, at most ``max_rows``."""
    stream = raw if hasattr(raw, "read") else io.StringIO(_text(raw))  # type: ignore[arg-type]
    try:
        reader = csv.DictReader(stream)  # type: ignore[arg-type]
        header = reader.fieldnames
    except csv.Error as exc:
        raise FileRefused(f"the file is not readable CSV: {exc}") from exc
    if not header:
        raise FileRefused("the file is empty: it needs a header row and at least one row")
    header = [column.strip() for column in header]
    reader.fieldnames = header
    missing = [col for col in (id_column, *mapping.values()) if col not in header]
    if missing:
        raise FileRefused(
            f"the header has no column {', '.join(repr(c) for c in missing)}; "
            f"it has {', '.join(repr(c) for c in header)}"
        )
    country = (country or "").strip().upper()
    if country and (len(country) != 2 or not country.isalpha()):
        raise FileRefused(f"--country {country!r} is not a two-letter country code")
    records: list[Record] = []
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    seen: dict[str, int] = {}
    try:
        for line, row in enumerate(reader, start=2):
            if len(records) >= max_rows:
                raise FileRefused(f"the file has more than {max_rows} rows; split it")
            if None in row:
                raise FileRefused(f"line {line} has more cells than the header")
            values = {name: (row.get(column) or "").strip() for name, column in mapping.items()}
            if any(len(value) > MAX_FIELD for value in values.values()):
                raise FileRefused(f"line {line} has a cell longer than {MAX_FIELD} characters")
            ident = (row.get(id_column) or "").strip()
            if not ident:
                raise FileRefused(f"line {line} has no id in column {id_column!r}")
            if ident in seen:
                raise FileRefused(f"id {ident!r} is on line {seen[ident]} and line {line}")
            seen[ident] = line
            pk = len(records) + 1
            values["country"] = values.get("country") or country
            records.append(record(pk=pk, **values))
            ids[pk] = ident
            names[pk] = values.get("legal_name", "")
    except csv.Error as exc:
        raise FileRefused(f"the file is not readable CSV: {exc}") from exc
    if not records:
        raise FileRefused("the file has a header but no rows")
    return FileRecords(records=records, ids=ids, names=names, from_file=len(records))


def add_accounts(file: FileRecords, accounts: Iterable[tuple[Record, str, str]]) -> None:
    """Put the accounts (record, enterprise id, legal name) beside the file's records, with
    pks after the file's."""
    for account, enterprise_id, legal_name in accounts:
        pk = len(file.records) + 1
        account.pk = pk
        file.records.append(account)
        file.ids[pk] = enterprise_id
        file.names[pk] = legal_name


@dataclass
class FileMatch:
    pairs: list[tuple[str, str, float, int | None]]  # id_a, id_b, score, cluster number
    scored: list[ScoredPair]  # the same pairs, with their evidence
    summary: dict[str, Any] = field(default_factory=dict)
    result: MatchResult | None = None


def match_records(
    file: FileRecords, *, threshold: float, against_accounts: bool = False
) -> FileMatch:
    """The file's pairs at or above ``threshold`` (sites of one organisation left out, as
    by default): within the file, or, ``against_accounts``, between a row and an account."""
    started = time.perf_counter()
    result = match(file.records, threshold=threshold)
    crosses = file.from_file

    def wanted(pair: ScoredPair) -> bool:
        if not against_accounts:
            return True
        return (pair.a <= crosses) != (pair.b <= crosses)

    kept = [pair for pair in result.duplicates if wanted(pair)]
    kept_pairs = {(pair.a, pair.b) for pair in kept}
    groups = [
        group for group in result.clusters
        if any((a, b) in kept_pairs for i, a in enumerate(group) for b in group[i + 1 :])
    ]  # fmt: skip
    number_of = {pk: number for number, group in enumerate(groups, 1) for pk in group}
    rows = []
    for pair in kept:
        cluster = number_of.get(pair.a)
        rows.append(
            (
                file.ids[pair.a], file.ids[pair.b], pair.score,
                cluster if cluster is not None and cluster == number_of.get(pair.b) else None,
            )
        )  # fmt: skip
    sites = sum(1 for pair in result.pairs if pair.sites and wanted(pair))
    summary = {
        "records": file.from_file,
        "accounts": len(file.records) - file.from_file if against_accounts else 0,
        "threshold": threshold,
        "pairs": len(rows),
        "clusters": len(groups),
        "sites_left_out": sites,
        "pairs_compared": len(result.blocking.pairs),
        "reduction_ratio": round(result.blocking.reduction_ratio, 6),
        "model": {
            "prior": float(f"{result.model.prior:.4g}"),
            "em_iterations": result.model.iterations,
            "converged": result.model.converged,
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    return FileMatch(pairs=rows, scored=kept, summary=summary, result=result)


def pairs_write(pairs: Sequence[tuple[str, str, float, int | None]], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(["id_a", "id_b", "score", "cluster"])
    for id_a, id_b, score, cluster in pairs:
        row = [id_a, id_b, f"{score:.3f}", "" if cluster is None else cluster]
        writer.writerow(spreadsheet_row(row))  # the ids come from an uploaded file
