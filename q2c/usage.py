"""Usage in: records from a sender (an event or the bulk API), deduplicated by the sender's
id, rated against the contract version in force on the usage date, and summed into one
``UsageReport`` per (version, product, calendar month) that billing receives as deltas.

Volume matters here (thousands of records per request), so ``usage_records_ingest`` writes
with a few multi-row statements instead of one save per record, and writes each record's
history row itself in the same transaction (actor and reason as every audited save would).
Ingests are serialised by the ``USG`` identifier counter's row lock, taken first: the
duplicate check, the identifiers (gap-free, one block per request) and the inserts all see
every earlier ingest committed.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from simple_history.utils import bulk_create_with_history

from core.audit import Actor, audit_context, current_actor, current_reason, reason_fit
from core.errors import reason_require
from core.identifiers import PREFIXES, WIDTH, format_identifier
from core.models import IdentifierCounter
from core.money import AMOUNT_PLACES
from core.records import LineKind
from q2c.models import (
    Contract,
    ContractLine,
    ContractVersion,
    UsageRecord,
    UsageReport,
    UsageReportState,
    UsageState,
    VersionKind,
    VersionState,
)

USAGE_REPORTS_TASK = "orchestration.usage_reports_send"
# What one bulk request may carry; larger batches are split by the sender.
MAX_RECORDS_PER_REQUEST = 5000
_PLACES = Decimal(1).scaleb(-AMOUNT_PLACES)
_MAX_QUANTITY = Decimal("1e14")
_ROW_FIELDS = ("usage_id", "contract_id", "product_code", "quantity", "occurred_at")


@dataclass(frozen=True, slots=True)
class UsageInput:
    """One usage record as a sender reports it (already parsed)."""

    usage_id: str
    contract_id: str  # CTR-…
    product_code: str
    quantity: Decimal
    occurred_at: dt.datetime
    corrects: str = ""  # the sender's id of the record this one replaces


@dataclass(frozen=True, slots=True)
class RowError:
    index: int
    usage_id: str
    reason: str


@dataclass
class IngestResult:
    created: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    reports: list[int] = field(default_factory=list)  # pks of the period reports touched

    @property
    def rejected(self) -> int:
        return len(self.errors)


def _text(row: Mapping[str, Any], name: str, limit: int) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is required (a string)")
    if len(value) > limit or "\x00" in value:
        raise ValueError(f"{name} is longer than {limit} characters or holds NUL")
    return value


def usage_row_parse(row: Any) -> UsageInput:
    """One record as received (a JSON object) checked and parsed; ``ValueError`` says why not.

    ``quantity`` is a decimal string (never a float) of at least 0 with up to 4 places,
    ``occurred_at`` an RFC 3339 timestamp with its offset.
    """
    if not isinstance(row, Mapping):
        raise ValueError("a record is a JSON object")
    unknown = set(row) - {*_ROW_FIELDS, "corrects"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    raw_quantity = row.get("quantity")
    if not isinstance(raw_quantity, str):
        raise ValueError('quantity must be a decimal string, e.g. "12.5"')
    try:
        quantity = Decimal(raw_quantity)
    except InvalidOperation:
        raise ValueError(f"quantity is not a decimal: {raw_quantity[:40]!r}") from None
    if not quantity.is_finite() or quantity < 0 or quantity >= _MAX_QUANTITY:
        raise ValueError("quantity must be a number from 0 to 10^14")
    if quantity != quantity.quantize(_PLACES):
        raise ValueError(f"quantity has more than {AMOUNT_PLACES} decimal places")
    raw_time = _text(row, "occurred_at", 40)
    try:
        occurred_at = parse_datetime(raw_time)
    except ValueError:
        occurred_at = None
    if occurred_at is None or timezone.is_naive(occurred_at):
        raise ValueError("occurred_at must be a timestamp with its offset, e.g. 2026-11-30T10:00Z")
    corrects = row.get("corrects") or ""
    if not isinstance(corrects, str) or len(corrects) > 128:
        raise ValueError("corrects must be the sender's id of an earlier record")
    return UsageInput(
        usage_id=_text(row, "usage_id", 128),
        contract_id=_text(row, "contract_id", 20),
        product_code=_text(row, "product_code", 64),
        quantity=quantity,
        occurred_at=occurred_at,
        corrects=corrects,
    )


def period_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar month ``day`` falls in: (first day, last day)."""
    last = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1), day.replace(day=last)


@dataclass(frozen=True, slots=True)
class _Price:
    product_id: int
    unit_price: Decimal


@dataclass
class _Term:
    """A contract's versions in force order, each with its usage prices by product code."""

    contract: Contract
    versions: list[tuple[dt.date, int, dict[str, _Price | None]]]  # (effective, pk, prices)

    def price_on(self, day: dt.date, product_code: str) -> tuple[int, _Price]:
        if day < self.contract.start_date or day > self.contract.end_date:
            raise ValueError(
                f"{day} is outside {self.contract.enterprise_id}'s term "
                f"({self.contract.start_date} to {self.contract.end_date})"
            )
        in_force = None
        for effective, pk, prices in self.versions:
            if effective > day:
                break
            in_force = (pk, prices)
        if in_force is None:
            raise ValueError(f"no version of {self.contract.enterprise_id} is in force on {day}")
        pk, prices = in_force
        if product_code not in prices:
            raise ValueError(
                f"{product_code} is not a usage line of {self.contract.enterprise_id} on {day}"
            )
        price = prices[product_code]
        if price is None:
            raise ValueError(f"{product_code} is not in the product catalog")
        return pk, price


def _terms(contract_ids: Iterable[str]) -> dict[str, _Term]:
    """The contracts named, with every version that has taken effect (active or superseded;
    a pending one is not in force yet) and its usage lines' net unit prices. Three queries."""
    contracts = {
        contract.enterprise_id: contract
        for contract in Contract.objects.filter(enterprise_id__in=set(contract_ids))
    }
    versions = list(
        ContractVersion.objects.filter(
            contract__in=contracts.values(),
            state__in=[VersionState.ACTIVE, VersionState.SUPERSEDED],
        ).order_by("effective_date", "number")
    )
    prices: dict[int, dict[str, _Price | None]] = defaultdict(dict)
    for line in ContractLine.objects.filter(version__in=versions, kind=LineKind.USAGE):
        net = line.unit_price - line.unit_price * line.discount_percent / Decimal(100)
        prices[line.version_id][line.product_code] = (
            _Price(line.product_id, net.quantize(_PLACES, rounding=ROUND_HALF_EVEN))
            if line.product_id is not None
            else None
        )
    terms = {cid: _Term(contract, []) for cid, contract in contracts.items()}
    by_pk = {contract.pk: cid for cid, contract in contracts.items()}
    for version in versions:
        lines = {} if version.kind == VersionKind.CANCELLATION else prices.get(version.pk, {})
        terms[by_pk[version.contract_id]].versions.append(
            (version.effective_date, version.pk, lines)
        )
    return terms


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_rows(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (values already adapted to the database): COPY on PostgreSQL (a
    statement with thousands of placeholders costs more to build than to run), multi-row
    INSERTs elsewhere."""
    if not rows:
        return
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {quote(table)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        # SQLite allows 32766 bound parameters per statement.
        per_statement = max(1, 30000 // len(columns))
        head = f"INSERT INTO {quote(table)} ({names}) VALUES "  # noqa: S608 (our table, columns)
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for chunk in _chunks(rows, per_statement):
            params = [value for row in chunk for value in row]
            cursor.execute(head + ", ".join([one] * len(chunk)), params)


def _existing_ids(source_system: str, usage_ids: list[str]) -> set[str]:
    """The sender ids of ``usage_ids`` already stored (one array parameter on PostgreSQL:
    thousands of IN placeholders cost more to build than the index probe)."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(UsageRecord._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT source_event_id FROM {table} "  # noqa: S608 (our table)
                "WHERE source_system = %s AND source_event_id = ANY(%s)",
                [source_system, usage_ids],
            )
            return {row[0] for row in cursor.fetchall()}
    found: set[str] = set()
    for chunk in _chunks(usage_ids, 500):
        found.update(
            UsageRecord.objects.filter(
                source_system=source_system, source_event_id__in=chunk
            ).values_list("source_event_id", flat=True)
        )
    return found


def _identifiers_take(count: int) -> int:
    """Reserve ``count`` USG numbers; returns the first. The counter row stays locked until
    the transaction ends (gap-free: a rollback gives them back)."""
    table = IdentifierCounter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_value = last_value + %s "  # noqa: S608 (table name is ours)
            "WHERE prefix = %s RETURNING last_value",
            [count, PREFIXES["usage"]],
        )
        (last,) = cursor.fetchone()
    return int(last) - count + 1


def _ingest_lock() -> None:
    """Serialise ingests on the USG counter row (created once)."""
    IdentifierCounter.objects.get_or_create(prefix=PREFIXES["usage"])
    list(IdentifierCounter.objects.select_for_update().filter(prefix=PREFIXES["usage"]))


@dataclass(frozen=True, slots=True)
class _Rated:
    row: UsageInput
    contract_pk: int
    currency: str
    version_pk: int
    price: _Price
    period_start: dt.date
    corrects_pk: int | None


def usage_records_ingest(
    *, source_system: str, rows: Sequence[UsageInput | RowError], actor: Actor, reason: str
) -> IngestResult:
    """Store and rate usage records from ``source_system``, in one transaction.

    ``rows`` are parsed records, or the ``RowError`` of one that did not parse (reported
    back in place). A record whose sender id is already stored (or earlier in ``rows``) is a
    duplicate and changes nothing. A record is rejected, with its reason and without being
    stored, when its contract is unknown, its date outside the contract's term or before any
    version in force, or its product not a usage line of the version in force on its date;
    the other records are stored. A record naming ``corrects`` replaces that earlier record
    (same contract and product): the earlier one is marked superseded. Every stored record
    is ``rated`` at the version's net unit price, with a history row (``actor``, ``reason``);
    the period reports they fall in are brought up to date. Refuses a blank reason.
    """
    reason_require(reason)
    result = IngestResult()
    now = timezone.now()
    parsed: list[tuple[int, UsageInput]] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if isinstance(row, RowError):
            result.errors.append(row)
        elif row.usage_id in seen:
            result.duplicates += 1
        else:
            seen.add(row.usage_id)
            parsed.append((index, row))
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        _ingest_lock()
        existing = _existing_ids(source_system, [row.usage_id for _, row in parsed])
        fresh = [(index, row) for index, row in parsed if row.usage_id not in existing]
        result.duplicates += len(parsed) - len(fresh)
        rated = _rate(source_system, fresh, result)
        deltas = _supersede(rated)
        if rated:
            _insert_records(rated, source_system=source_system, now=now, actor=actor, reason=reason)
        result.created = len(rated)
        for r in rated:
            key = (r.version_pk, r.price.product_id, r.period_start)
            deltas[key] = deltas.get(key, Decimal("0")) + r.row.quantity
        result.reports = usage_reports_refresh(deltas=deltas, today=now.date())
        due = list(result.reports)
        if due:
            transaction.on_commit(lambda: _enqueue_reports(due))
    result.errors.sort(key=lambda error: error.index)
    return result


def _enqueue_reports(report_pks: list[int]) -> None:
    """Ask orchestration to send the reports, in one message (named, not imported: it sits
    above q2c). The rows are the truth; its sweeper sends what a lost message leaves."""
    from celery import current_app

    current_app.send_task(USAGE_REPORTS_TASK, args=[report_pks])


def _rate(
    source_system: str, fresh: list[tuple[int, UsageInput]], result: IngestResult
) -> list[_Rated]:
    terms = _terms(row.contract_id for _, row in fresh)
    originals = _originals(source_system, {row.corrects for _, row in fresh if row.corrects})
    corrected: set[int] = set()
    rated: list[_Rated] = []
    for index, row in fresh:
        term = terms.get(row.contract_id)
        try:
            if term is None:
                raise ValueError(f"unknown contract {row.contract_id}")
            day = row.occurred_at.astimezone(dt.UTC).date()
            version_pk, price = term.price_on(day, row.product_code)
            corrects_pk = None
            if row.corrects:
                corrects_pk = _correction_check(row, term, price, originals, corrected)
        except ValueError as exc:
            result.errors.append(RowError(index, row.usage_id, str(exc)))
            continue
        rated.append(
            _Rated(
                row=row, contract_pk=term.contract.pk, currency=term.contract.currency,
                version_pk=version_pk, price=price, period_start=day.replace(day=1),
                corrects_pk=corrects_pk,
            )
        )  # fmt: skip
    return rated


def _originals(source_system: str, usage_ids: set[str]) -> dict[str, UsageRecord]:
    if not usage_ids:
        return {}
    return {
        record.source_event_id: record
        for record in UsageRecord.objects.filter(
            source_system=source_system, source_event_id__in=usage_ids
        )
    }


def _correction_check(
    row: UsageInput,
    term: _Term,
    price: _Price,
    originals: dict[str, UsageRecord],
    corrected: set[int],
) -> int:
    original = originals.get(row.corrects)
    if original is None:
        raise ValueError(f"corrects {row.corrects}, which is not a stored usage record")
    if original.corrects_id is not None:
        raise ValueError(f"corrects {row.corrects}, itself a correction: name the original")
    if original.contract_id != term.contract.pk or original.product_id != price.product_id:
        raise ValueError(f"corrects {row.corrects} of another contract or product")
    if original.pk in corrected:
        raise ValueError(f"{row.corrects} is corrected twice in one request")
    corrected.add(original.pk)
    return original.pk


def _supersede(rated: list[_Rated]) -> dict[tuple[int, int, dt.date], Decimal]:
    """Mark the record each correction replaces (the original, or its latest correction)
    superseded, with a history row each. Returns what leaves each period report: minus the
    quantity of every record superseded, by (version pk, product pk, period start)."""
    original_pks = [r.corrects_pk for r in rated if r.corrects_pk is not None]
    deltas: dict[tuple[int, int, dt.date], Decimal] = {}
    if not original_pks:
        return deltas
    current = UsageRecord.objects.filter(
        Q(pk__in=original_pks) | Q(corrects__in=original_pks), superseded=False
    )
    for record in current.select_for_update().order_by("pk"):
        record.superseded = True
        record.save(update_fields=["superseded", "updated_at"])
        if record.contract_version_id is not None and record.period_start is not None:
            key = (record.contract_version_id, record.product_id, record.period_start)
            deltas[key] = deltas.get(key, Decimal("0")) - record.quantity
    return deltas


_RECORD_COLUMNS = [
    "enterprise_id", "created_at", "updated_at", "state_changed_at", "contract_id",
    "product_id", "quantity", "occurred_at", "source_system", "source_event_id", "state",
    "rejection_reason", "contract_version_id", "period_start", "currency", "unit_price",
    "amount", "corrects_id", "superseded",
]  # fmt: skip


def _insert_records(
    rated: list[_Rated], *, source_system: str, now: dt.datetime, actor: Actor, reason: str
) -> None:
    """The records and their history rows ("+", the actor, the reason), numbered USG-…."""
    first = _identifiers_take(len(rated))
    prefix = PREFIXES["usage"]
    rated_state = UsageState.RATED.value
    rows: list[tuple[Any, ...]] = []
    for offset, r in enumerate(rated):
        amount = (r.row.quantity * r.price.unit_price).quantize(_PLACES, ROUND_HALF_EVEN)
        rows.append(
            (
                format_identifier(prefix, first + offset), now, now, now,
                r.contract_pk, r.price.product_id, r.row.quantity, r.row.occurred_at,
                source_system, r.row.usage_id, rated_state, "", r.version_pk, r.period_start,
                r.currency, r.price.unit_price, amount, r.corrects_pk, False,
            )
        )  # fmt: skip
    if connection.vendor != "postgresql":
        rows = [_adapted(row) for row in rows]
    _insert_rows(UsageRecord._meta.db_table, _RECORD_COLUMNS, rows)
    for low, high in _same_width_ranges(first, first + len(rated) - 1):
        _history_copy(
            first=format_identifier(prefix, low),
            last=format_identifier(prefix, high),
            at=rows[0][1],
            reason=reason_fit(reason),
            user_id=actor.user.pk,
        )


def _same_width_ranges(first: int, last: int) -> list[tuple[int, int]]:
    """``first``..``last`` cut where the number gains a digit, so each part is one range of
    enterprise ids in text order too (USG-999999 sorts after USG-1000000)."""
    ranges = []
    while first <= last:
        width_end = 10 ** max(len(str(first)), WIDTH) - 1
        ranges.append((first, min(last, width_end)))
        first = width_end + 1
    return ranges


def _history_copy(*, first: str, last: str, at: Any, reason: str | None, user_id: int) -> None:
    """The "+" history row of every record just written (``first``..``last``, a gap-free
    range of the unique enterprise ids), copied inside the database: one INSERT … SELECT."""
    history_model: Any = UsageRecord.history.model  # type: ignore[attr-defined]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in ["id", *_RECORD_COLUMNS])
    history_table = quote(history_model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {history_table} ({columns}, history_date, history_change_reason, "  # noqa: S608 (our tables and columns)
            f"history_type, history_user_id) SELECT {columns}, %s, %s, '+', %s "
            f"FROM {quote(UsageRecord._meta.db_table)} "
            "WHERE enterprise_id >= %s AND enterprise_id <= %s",
            [at, reason, user_id, first, last],
        )


def _adapted(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A record row's values as the SQLite backend stores them (Django's adapters)."""
    ops = connection.ops
    return tuple(
        ops.adapt_datetimefield_value(value)
        if isinstance(value, dt.datetime)
        else ops.adapt_datefield_value(value)
        if isinstance(value, dt.date)
        else ops.adapt_decimalfield_value(value, 18, 4)
        if isinstance(value, Decimal)
        else value
        for value in row
    )


def usage_reports_refresh(
    *, deltas: Mapping[tuple[int, int, dt.date], Decimal], today: dt.date
) -> list[int]:
    """Add ``deltas`` (by version pk, product pk, period start: what the records just stored
    or superseded add to or take from each period) to their period reports: created when new,
    rated quantity and amount moved by the delta, ``pending`` once their month has ended and
    billing has not received all of it. Writes a history row for each one that changed.
    Returns the pks of the reports that are pending. Call inside the ingest's transaction:
    its lock serialises ingests, so adding to the totals never loses an update.
    """
    keys = sorted(deltas)
    if not keys:
        return []
    version_pks = {version for version, _, _ in keys}
    versions = {
        version.pk: version
        for version in ContractVersion.objects.filter(pk__in=version_pks).select_related("contract")
    }
    prices = _version_prices(version_pks)
    existing = {
        (report.contract_version_id, report.product_id, report.period_start): report
        for report in UsageReport.objects.select_for_update()
        .filter(
            contract_version__in=version_pks,
            product__in={product for _, product, _ in keys},
            period_start__in={period for _, _, period in keys},
        )
        .order_by("pk")
    }
    created: list[UsageReport] = []
    changed: list[UsageReport] = []
    for key in keys:
        version_pk, product_pk, period = key
        version = versions[version_pk]
        report = existing.get(key)
        if report is None:
            report = UsageReport(
                contract=version.contract, contract_version=version, product_id=product_pk,
                period_start=period, period_end=period_of(period)[1],
                currency=version.contract.currency,
                unit_price=prices.get((version_pk, product_pk), Decimal("0")),
            )  # fmt: skip
            existing[key] = report
        quantity = report.quantity + deltas[key]
        state = report_state(report, quantity=quantity, today=today)
        if report.pk is None or (report.quantity, report.state) != (quantity, state):
            report.quantity = quantity
            report.amount = (quantity * report.unit_price).quantize(_PLACES, ROUND_HALF_EVEN)
            report.state = state
            (changed if report.pk else created).append(report)
    _reports_save(created=created, changed=changed)
    wanted = set(keys)
    return sorted(
        report.pk
        for key, report in existing.items()
        if key in wanted and report.state == UsageReportState.PENDING
    )


def _reports_save(*, created: list[UsageReport], changed: list[UsageReport]) -> None:
    """Write the reports with their history rows (actor and reason of the audit context)."""
    actor = current_actor()
    user = actor.user if actor is not None else None
    why = reason_fit(current_reason())
    now = timezone.now()
    if created:
        bulk_create_with_history(created, UsageReport, default_user=user, default_change_reason=why)
    if not changed:
        return
    for report in changed:
        report.updated_at = now
    if connection.vendor == "postgresql":
        # One UPDATE over arrays: bulk_update's CASE per row and field costs seconds here.
        table = connection.ops.quote_name(UsageReport._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS r SET quantity = v.quantity, amount = v.amount, "  # noqa: S608
                "state = v.state, updated_at = %s FROM unnest(%s::bigint[], %s::numeric[], "
                "%s::numeric[], %s::text[]) AS v(id, quantity, amount, state) WHERE r.id = v.id",
                [
                    now,
                    [r.pk for r in changed],
                    [r.quantity for r in changed],
                    [r.amount for r in changed],
                    [r.state for r in changed],
                ],
            )
    else:
        UsageReport.objects.bulk_update(changed, ["quantity", "amount", "state", "updated_at"])
    UsageReport.history.bulk_history_create(  # type: ignore[attr-defined]
        changed, update=True, default_user=user, default_change_reason=why
    )


def _version_prices(version_pks: set[int]) -> dict[tuple[int, int], Decimal]:
    prices: dict[tuple[int, int], Decimal] = {}
    for line in ContractLine.objects.filter(
        version__in=version_pks, kind=LineKind.USAGE, product__isnull=False
    ):
        net = line.unit_price - line.unit_price * line.discount_percent / Decimal(100)
        assert line.product_id is not None
        prices[(line.version_id, line.product_id)] = net.quantize(_PLACES, ROUND_HALF_EVEN)
    return prices


def report_state(report: UsageReport, *, quantity: Decimal, today: dt.date) -> str:
    """``open`` while its month runs, then ``pending`` until billing has all of it
    (``reported``); a ``failed`` report stays failed until a person retries it."""
    if report.state == UsageReportState.FAILED:
        return UsageReportState.FAILED
    if report.period_end >= today:
        return UsageReportState.OPEN
    if quantity == report.reported_quantity:
        return UsageReportState.REPORTED
    return UsageReportState.PENDING


def usage_reports_close(*, today: dt.date, actor: Actor) -> int:
    """Reports whose month ended before ``today`` become ``pending`` (or ``reported`` when
    there is nothing to send); returns how many changed. One transaction each, locked."""
    changed = 0
    due = UsageReport.objects.filter(state=UsageReportState.OPEN, period_end__lt=today)
    for pk in due.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic(), audit_context(actor=actor, reason="usage month ended"):
            report = UsageReport.objects.select_for_update().get(pk=pk)
            state = report_state(report, quantity=report.quantity, today=today)
            if state != report.state:
                report.state = state
                report.save()
                changed += 1
    return changed
