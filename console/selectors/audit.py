"""Reads of the audit trail: every model with simple-history ``history``, filtered, diffed.

Each tracked model keeps its own history table, so a page across models is the newest rows
of each table merged in Python. Pages are keyset-paginated on (history_date, model,
history_id), newest first: no COUNT(*) and no OFFSET, so a page costs the same on the first
and the millionth row. Diffs compare each row with the previous row of the same record
(found by a correlated subquery on the indexed record id), never by replaying a record's
whole history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, models
from django.db.models import CharField, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.utils import timezone

from core.audit import SYSTEM_ACTOR_PATTERN
from core.params import id_from
from core.templatetags.readable import when

# Bumped by every save, so it would appear in every diff without telling anyone anything.
_UNTRACKED_FIELDS = frozenset({"updated_at"})
HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}
ACTOR_KINDS = ("person", "system")
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class TrackedModel:
    """A model with an audit trail: ``key`` is ``app_label.model_name``."""

    key: str
    model: type[models.Model]
    history_model: type[Any]  # simple-history builds it at run time
    label: str
    view_permission: str
    has_enterprise_id: bool
    fields: tuple[str, ...]  # attnames compared by diffs, in model order

    def record_label(self, row: Any) -> str:
        return str(row.enterprise_id) if self.has_enterprise_id else str(row.id)


def tracked_models() -> list[TrackedModel]:
    """Every model whose changes simple-history records, in app and model order."""
    found = []
    for model in apps.get_models():
        manager_name = getattr(model._meta, "simple_history_manager_attribute", None)
        if not manager_name:
            continue
        history_model = getattr(model, manager_name).model
        opts = model._meta
        names = {f.attname for f in opts.concrete_fields}
        found.append(
            TrackedModel(
                key=f"{opts.app_label}.{opts.model_name}",
                model=model,
                history_model=history_model,
                label=str(opts.verbose_name).capitalize(),
                view_permission=f"{opts.app_label}.view_{opts.model_name}",
                has_enterprise_id="enterprise_id" in names,
                fields=tuple(
                    f.attname
                    for f in opts.concrete_fields
                    if not f.primary_key and f.attname not in _UNTRACKED_FIELDS
                ),
            )
        )
    return sorted(found, key=lambda t: t.key)


def tracked_model(key: str) -> TrackedModel | None:
    """The audited model named ``key`` (``app_label.model``), None when it is not one."""
    return next((t for t in tracked_models() if t.key == key), None)


def visible_tracked_models(user: Any) -> list[TrackedModel]:
    """The tracked models whose records ``user`` may view: their history is theirs to read."""
    if not user.is_authenticated:
        return []
    return [t for t in tracked_models() if user.has_perm(t.view_permission)]


# --- Filters and cursors ------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilter:
    """What an auditor narrows the trail by. Empty values do not filter.

    ``record`` is an enterprise id (any model that has one) or a primary key (digits).
    ``since`` is inclusive, ``until`` exclusive. ``field`` keeps the rows that changed that
    field (models without it drop out): a row changes a field when it created the record or
    the value differs from the record's previous row.
    """

    models: tuple[str, ...] = ()
    record: str = ""
    actor: str = ""
    actor_kind: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    field: str = ""


@dataclass(frozen=True, order=True)
class Cursor:
    """The position after the last row shown: rows strictly older come next."""

    history_date: dt.datetime
    model: str
    history_id: int

    def encode(self) -> str:
        return f"{self.history_date.isoformat()}~{self.model}~{self.history_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        """None for anything that is not a cursor this module wrote."""
        parts = text.split("~")
        if len(parts) != 3 or id_from(parts[2]) is None:
            return None
        try:
            when = dt.datetime.fromisoformat(parts[0])
        except ValueError:
            return None
        if timezone.is_naive(when):
            return None
        return cls(history_date=when, model=parts[1], history_id=int(parts[2]))


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str | None
    new: str | None
    # For people: the field's name, and a reference's business id instead of its key.
    name: str = ""
    old_label: str | None = None
    new_label: str | None = None


@dataclass
class HistoryEntry:
    tracked: TrackedModel
    row: Any  # the historical row
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.tracked.key

    @property
    def record(self) -> str:
        return self.tracked.record_label(self.row)

    @property
    def record_id(self) -> int:
        return int(self.row.id)

    @property
    def history_id(self) -> int:
        return int(self.row.history_id)

    @property
    def when(self) -> dt.datetime:
        return self.row.history_date  # type: ignore[no-any-return]

    @property
    def kind(self) -> str:
        return HISTORY_TYPES.get(self.row.history_type, self.row.history_type)

    @property
    def actor(self) -> str:
        user = self.row.history_user
        return str(user.get_username()) if user is not None else ""

    @property
    def actor_is_system(self) -> bool:
        user = self.row.history_user
        return user is not None and _is_system_user(user)

    @property
    def reason(self) -> str:
        return self.row.history_change_reason or ""

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.when, self.model, self.history_id)


@dataclass
class HistoryPage:
    entries: list[HistoryEntry]
    next_cursor: Cursor | None


def _is_system_user(user: Any) -> bool:
    return bool(SYSTEM_ACTOR_PATTERN.match(user.get_username())) and not user.is_active


def _user_ids_by_kind() -> tuple[list[int], list[int]]:
    """(system actors' user ids, people's user ids), from one read of the users.

    "People only" filters on the people's ids: each history table is then read on its
    ``(history_user, history_date)`` index; excluding the system actors instead walked the
    whole table when people changed few of its rows (2.3 s on a million contracts' history).
    """
    system: list[int] = []
    people: list[int] = []
    for user in get_user_model().objects.only("pk", "username", "is_active"):
        (system if _is_system_user(user) else people).append(user.pk)
    return system, people


def _previous_row(history_model: type[models.Model]) -> QuerySet[Any]:
    """The record's row just before the outer row, newest first (for a Subquery)."""
    return (
        history_model._default_manager.filter(id=OuterRef("id"))
        .filter(
            Q(history_date__lt=OuterRef("history_date"))
            | Q(history_date=OuterRef("history_date"), history_id__lt=OuterRef("history_id"))
        )
        .order_by("-history_date", "-history_id")
    )


def _set_at_creation(tracked: TrackedModel, attname: str) -> Q:
    """A creation row sets a field when it gives it a value (as ``row_changes`` shows it)."""
    field = next(f for f in tracked.model._meta.concrete_fields if f.attname == attname)
    condition = Q(**{f"{attname}__isnull": False})
    if isinstance(field, models.CharField | models.TextField):
        condition &= ~Q(**{attname: ""})
    elif isinstance(field, models.JSONField):
        condition &= ~Q(**{attname: {}}) & ~Q(**{attname: []})
    return condition


def _before(cursor: Cursor, model_key: str) -> Q:
    """Rows of ``model_key`` that come after ``cursor`` in (date, model, id) descending order."""
    older = Q(history_date__lt=cursor.history_date)
    if model_key < cursor.model:
        return older | Q(history_date=cursor.history_date)
    if model_key == cursor.model:
        return older | Q(history_date=cursor.history_date, history_id__lt=cursor.history_id)
    return older


def _actor_id(username: str) -> int | None:
    """The user behind an actor name, read once per page: each history table is then filtered
    on its ``(history_user, history_date)`` index instead of joining every row to its user."""
    return get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()


def _history_queryset(
    tracked: TrackedModel,
    flt: HistoryFilter,
    *,
    system_ids: list[int] | None,
    actor_id: int | None = None,
    person_ids: list[int] | None = None,
) -> QuerySet[Any] | None:
    """Rows of one model's history matching ``flt``; None when nothing there can match."""
    hist = tracked.history_model
    qs = hist._default_manager.select_related("history_user")
    record = flt.record.strip()
    if record:
        record_id = id_from(record)
        if record_id is not None:
            qs = qs.filter(id=record_id)
        elif tracked.has_enterprise_id:
            qs = qs.filter(enterprise_id=record)
        else:
            return None
    if flt.actor:
        if actor_id is None:
            return None
        qs = qs.filter(history_user_id=actor_id)
    if flt.actor_kind == "person" and person_ids is not None:
        qs = qs.filter(history_user_id__in=person_ids)
    elif flt.actor_kind == "person":
        qs = qs.filter(history_user__isnull=False).exclude(history_user_id__in=system_ids or [])
    elif flt.actor_kind == "system":
        qs = qs.filter(history_user_id__in=system_ids or [])
    if flt.since is not None:
        qs = qs.filter(history_date__gte=flt.since)
    if flt.until is not None:
        qs = qs.filter(history_date__lt=flt.until)
    if flt.field:
        if flt.field not in tracked.fields:
            return None
        previous = _previous_row(hist)
        # A creation that gives it a value, or a change from the previous row (NULL-safe).
        qs = qs.annotate(
            _prev_exists=Exists(previous),
            _prev_value=Subquery(previous.values(flt.field)[:1]),
        ).filter(
            (Q(_prev_exists=False) & _set_at_creation(tracked, flt.field))
            | Q(_prev_exists=True, _prev_value__isnull=True, **{f"{flt.field}__isnull": False})
            | Q(_prev_exists=True, _prev_value__isnull=False, **{f"{flt.field}__isnull": True})
            | (Q(_prev_exists=True) & ~Q(_prev_value=F(flt.field)))
        )
    return qs.order_by("-history_date", "-history_id")


def history_page(
    *,
    user: Any,
    flt: HistoryFilter,
    after: Cursor | None = None,
    size: int = 50,
    with_changes: bool = True,
) -> HistoryPage:
    """One page of the trail, newest first, limited to the models ``user`` may view.

    Raises PermissionError when ``flt`` names a model the user may not view.
    """
    size = max(1, min(size, MAX_PAGE_SIZE))
    visible = {t.key: t for t in visible_tracked_models(user)}
    if flt.models:
        refused = [key for key in flt.models if key not in visible]
        if refused:
            raise PermissionError(f"you may not view the history of {', '.join(refused)}")
        chosen = [visible[key] for key in flt.models]
    else:
        chosen = list(visible.values())
    system_ids, person_ids = _user_ids_by_kind() if flt.actor_kind in ACTOR_KINDS else (None, None)
    actor_id = _actor_id(flt.actor) if flt.actor else None

    matching: list[tuple[TrackedModel, QuerySet[Any]]] = []
    for tracked in chosen:
        qs = _history_queryset(
            tracked, flt, system_ids=system_ids, actor_id=actor_id, person_ids=person_ids
        )
        if qs is None:
            continue
        if after is not None:
            qs = qs.filter(_before(after, tracked.key))
        matching.append((tracked, qs))
    if len(matching) > 1:
        matching = _narrow_to_page(matching, size=size)

    entries: list[HistoryEntry] = []
    for tracked, qs in matching:
        if with_changes:
            qs = qs.annotate(
                _prev_history_id=Subquery(
                    _previous_row(tracked.history_model).values("history_id")[:1]
                )
            )
        entries.extend(HistoryEntry(tracked, row) for row in qs[: size + 1])
    entries.sort(key=lambda e: e.cursor, reverse=True)
    more = len(entries) > size
    entries = entries[:size]
    if with_changes:
        _attach_changes(entries)
    return HistoryPage(entries=entries, next_cursor=entries[-1].cursor if more else None)


def _narrow_to_page(
    matching: list[tuple[TrackedModel, QuerySet[Any]]], *, size: int
) -> list[tuple[TrackedModel, QuerySet[Any]]]:
    """Find which rows of which models make the page in one round trip (a UNION ALL of each
    table's newest keys, read from its indexes), then read only those rows in full."""
    keyed = [
        qs.annotate(_model=Value(tracked.key, output_field=CharField()))
        .values_list("history_date", "_model", "history_id")
        .order_by("-history_date", "-history_id")[: size + 1]
        for tracked, qs in matching
    ]
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(keyed[0].union(*keyed[1:], all=True))
    else:  # SQLite (the demo): no LIMIT inside a UNION; one small read per table instead
        rows = [row for qs in keyed for row in qs]
    keys = sorted(rows, reverse=True)[: size + 1]
    ids: dict[str, list[int]] = {}
    for _, model, history_id in keys:
        ids.setdefault(model, []).append(history_id)
    return [
        (tracked, qs.filter(history_id__in=ids[tracked.key]))
        for tracked, qs in matching
        if tracked.key in ids
    ]


def history_iter(*, user: Any, flt: HistoryFilter, chunk: int = 500) -> Iterator[HistoryEntry]:
    """Every matching row, newest first, a chunk at a time (for exports): never all in memory."""
    after: Cursor | None = None
    while True:
        page = history_page(user=user, flt=flt, after=after, size=chunk)
        yield from page.entries
        if page.next_cursor is None:
            return
        after = page.next_cursor


def _display(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _attach_changes(entries: list[HistoryEntry]) -> None:
    """Fill each entry's field changes against the record's previous row (one query a model)."""
    by_model: dict[str, list[HistoryEntry]] = {}
    for entry in entries:
        by_model.setdefault(entry.model, []).append(entry)
    for group in by_model.values():
        tracked = group[0].tracked
        hist = tracked.history_model
        wanted = [e for e in group if e.row.history_type != "-"]
        if not wanted:
            continue
        prev_of = {e.history_id: e.row._prev_history_id for e in wanted}
        previous = {
            row.history_id: row
            for row in hist._default_manager.filter(
                history_id__in=[p for p in prev_of.values() if p is not None]
            )
        }
        for entry in wanted:
            before = previous.get(prev_of.get(entry.history_id))
            entry.changes = row_changes(tracked, before, entry.row)


# Records without an enterprise id, as people name them.
RECORD_PREFIXES = {"exceptions.operationalexception": "EXC", "masterdata.mergerecord": "MRG"}


def _reference_label(model: type[models.Model], value: str, found: dict[str, Any]) -> str:
    prefix = RECORD_PREFIXES.get(model._meta.label_lower)
    if prefix:
        return f"{prefix}-{value}"
    record = found.get(value)
    if record is None:
        return f"{model._meta.verbose_name} {value} (deleted)"
    if isinstance(record, AbstractBaseUser):
        return str(record.get_username())
    enterprise_id = getattr(record, "enterprise_id", "")
    return str(enterprise_id) if enterprise_id else f"{model._meta.verbose_name} {value}"


def _when_label(value: str | None) -> str | None:
    """A time as every page shows it (the display time zone, named)."""
    if not value:
        return None
    try:
        return when(dt.datetime.fromisoformat(value))
    except ValueError:
        return value


def label_references(entries: list[HistoryEntry]) -> None:
    """Name the fields of every change, and show a reference by its business id (ACC-…,
    EXC-7) instead of its primary key: one query per referenced model on the page."""
    fields: dict[str, dict[str, Any]] = {}
    wanted: dict[type[models.Model], set[str]] = {}
    for entry in entries:
        by_name = fields.setdefault(
            entry.model, {f.attname: f for f in entry.tracked.model._meta.concrete_fields}
        )
        for change in entry.changes:
            target = by_name[change.field].related_model
            if target is not None:
                values = {v for v in (change.old, change.new) if v is not None and v.isdigit()}
                wanted.setdefault(target, set()).update(values)
    found = {
        model: {str(pk): record for pk, record in model._default_manager.in_bulk(values).items()}
        for model, values in wanted.items()
    }
    for entry in entries:
        by_name = fields[entry.model]
        labelled = []
        for change in entry.changes:
            f = by_name[change.field]
            target = f.related_model
            if isinstance(f, models.DateTimeField):
                labelled.append(
                    replace(
                        change,
                        name=str(f.verbose_name),
                        old_label=_when_label(change.old),
                        new_label=_when_label(change.new),
                    )
                )
                continue
            if target is None:
                labelled.append(replace(change, name=str(f.verbose_name)))
                continue
            known = found.get(target, {})
            labelled.append(
                replace(
                    change,
                    name=str(f.verbose_name),
                    old_label=_reference_label(target, change.old, known) if change.old else None,
                    new_label=_reference_label(target, change.new, known) if change.new else None,
                )
            )
        entry.changes = labelled


def row_changes(tracked: TrackedModel, before: Any | None, after: Any) -> list[FieldChange]:
    """The fields whose value differs between two rows of one record (all set ones if new)."""
    changes = []
    for name in tracked.fields:
        new = getattr(after, name)
        old = getattr(before, name) if before is not None else None
        if before is None and new in (None, "", {}, []):
            continue
        if before is not None and old == new:
            continue
        changes.append(FieldChange(field=name, old=_display(old), new=_display(new)))
    return changes


# --- As of a date ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordAsOf:
    tracked: TrackedModel
    row: Any | None  # the history row in force at that time; None if the record did not exist

    @property
    def values(self) -> list[tuple[str, str | None]]:
        if self.row is None:
            return []
        return [(name, _display(getattr(self.row, name))) for name in self.tracked.fields]


def record_as_of(*, tracked: TrackedModel, record: str, when: dt.datetime) -> RecordAsOf:
    """The record as it stood at ``when`` (its latest history row at or before that time)."""
    qs = tracked.history_model._default_manager.select_related("history_user")
    record = record.strip()
    record_id = id_from(record)
    if record_id is not None:
        qs = qs.filter(id=record_id)
    elif tracked.has_enterprise_id and record:
        qs = qs.filter(enterprise_id=record)
    else:
        return RecordAsOf(tracked=tracked, row=None)
    row = qs.filter(history_date__lte=when).order_by("-history_date", "-history_id").first()
    if row is not None and row.history_type == "-":
        row = None
    return RecordAsOf(tracked=tracked, row=row)
