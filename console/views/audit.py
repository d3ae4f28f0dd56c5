"""The audit browser: every tracked model's history, the operator-action log, a record as of
a date, and a streamed CSV export. Read-only; each person sees the history of the models
whose records they may view (auditors: all of them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils import timezone

from console.selectors import audit as sel
from console.views.records import HtmxHttpRequest, page_permission
from core.exports import csv_lines
from core.params import date_from
from core.roles import role_of

PAGE_SIZE = 50
FILTER_PARAMS = ("model", "record", "actor", "actor_kind", "since", "until", "field")


def _require_role(request: HttpRequest) -> list[sel.TrackedModel]:
    """The models whose history the user may read; 403 without a role or without any."""
    if not role_of(request.user):
        raise PermissionDenied("your user has no role in Tandem; ask an admin to assign one")
    visible = sel.visible_tracked_models(request.user)
    if not visible:
        raise PermissionDenied("your role may not view any record's history")
    return visible


def _parse_date(text: str) -> dt.date | None:
    return date_from(text)


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def history_filter_from(
    params: Any, visible: list[sel.TrackedModel], *, actor_kind: str | None = None
) -> tuple[sel.HistoryFilter, dict[str, str], list[str]]:
    """The filter a query string asks for, the cleaned values to show back, and errors.

    A model the user may not view is refused (PermissionDenied), never silently dropped.
    """
    raw = {name: (params.get(name) or "").strip() for name in FILTER_PARAMS}
    if actor_kind is not None:
        raw["actor_kind"] = actor_kind
    errors = []
    for name, value in raw.items():
        if "\x00" in value:  # PostgreSQL refuses NUL in text
            errors.append(f"{name} must not contain NUL characters")
            raw[name] = ""
    keys = {t.key for t in visible}
    if raw["model"] and raw["model"] not in keys:
        if sel.tracked_model(raw["model"]) is not None:
            raise PermissionDenied(f"you may not view the history of {raw['model']}")
        errors.append(f"unknown model {raw['model']!r}")
        raw["model"] = ""
    if raw["actor_kind"] not in ("", *sel.ACTOR_KINDS):
        errors.append(f"actor kind must be one of {', '.join(sel.ACTOR_KINDS)}")
        raw["actor_kind"] = ""
    since, until = _parse_date(raw["since"]), _parse_date(raw["until"])
    for name, parsed in (("since", since), ("until", until)):
        if raw[name] and parsed is None:
            errors.append(f"{name} must be a date (YYYY-MM-DD, 1900 to 9998)")
            raw[name] = ""
    if raw["field"]:
        tracked = sel.tracked_model(raw["model"]) if raw["model"] else None
        if tracked is not None and raw["field"] not in tracked.fields:
            errors.append(f"{raw['model']} has no tracked field {raw['field']!r}")
            raw["field"] = ""
    flt = sel.HistoryFilter(
        models=(raw["model"],) if raw["model"] else (),
        record=raw["record"],
        actor=raw["actor"],
        actor_kind=raw["actor_kind"],
        since=_start_of(since) if since else None,
        until=_start_of(until + dt.timedelta(days=1)) if until else None,
        field=raw["field"],
    )
    return flt, raw, errors


def _history_response(
    request: HtmxHttpRequest, *, template: str, actor_kind: str | None = None
) -> HttpResponse:
    visible = _require_role(request)
    flt, values, errors = history_filter_from(request.GET, visible, actor_kind=actor_kind)
    after_text = request.GET.get("after") or ""
    after = sel.Cursor.decode(after_text) if after_text else None
    if after_text and after is None:
        errors.append("that page link is no longer valid; showing the newest rows")
    page = sel.history_page(user=request.user, flt=flt, after=after, size=PAGE_SIZE)
    sel.label_references(page.entries)
    query = {k: v for k, v in values.items() if v and not (actor_kind and k == "actor_kind")}
    chosen = sel.tracked_model(values["model"]) if values["model"] else None
    context = {
        "page": page,
        "models": visible,
        "fields": chosen.fields if chosen else (),
        "values": values,
        "errors": errors,
        "actor_kinds": sel.ACTOR_KINDS,
        "fixed_actor_kind": actor_kind,
        "query": urlencode(query),
        "next_query": urlencode({**query, "after": page.next_cursor.encode()})
        if page.next_cursor
        else "",
        "is_first_page": after is None,
    }
    if request.htmx:
        return render(request, f"{template}#rows", context)
    return render(request, template, context)


@page_permission("audit-history")
def history(request: HtmxHttpRequest) -> HttpResponse:
    return _history_response(request, template="audit/history.html")


@page_permission("audit-operators")
def operator_actions(request: HtmxHttpRequest) -> HttpResponse:
    """Changes made by people (never system actors), with the reason each one gave."""
    return _history_response(request, template="audit/operators.html", actor_kind="person")


@page_permission("audit-as-of")
def as_of(request: HttpRequest) -> HttpResponse:
    visible = _require_role(request)
    keys = {t.key: t for t in visible}
    model = (request.GET.get("model") or "").strip()
    record = (request.GET.get("record") or "").strip()
    at_text = (request.GET.get("at") or "").strip()
    if "\x00" in model + record + at_text:
        return HttpResponseBadRequest("parameters must not contain NUL characters")
    errors: list[str] = []
    result = None
    at = None
    if model and model not in keys:
        if sel.tracked_model(model) is not None:
            raise PermissionDenied(f"you may not view the history of {model}")
        errors.append(f"unknown model {model!r}")
    if at_text:
        try:
            at = dt.datetime.fromisoformat(at_text)
        except ValueError:
            errors.append("as of must be a date and time (YYYY-MM-DDTHH:MM)")
        else:
            if timezone.is_naive(at):
                at = timezone.make_aware(at)
    if model in keys and record and at is not None and not errors:
        result = sel.record_as_of(tracked=keys[model], record=record, when=at)
    return render(
        request,
        "audit/as_of.html",
        {
            "models": visible,
            "values": {"model": model, "record": record, "at": at_text},
            "errors": errors,
            "result": result,
            "at": at,
        },
    )


EXPORT_HEADER = ["when", "model", "record", "record_id", "history_id", "type", "actor", "reason"]


def export_rows(entries: Iterator[sel.HistoryEntry]) -> Iterator[list[str]]:
    yield [*EXPORT_HEADER, "changes"]
    for e in entries:
        changes = "; ".join(f"{c.field}: {c.old or ''} -> {c.new or ''}" for c in e.changes)
        yield [
            e.when.isoformat(),
            e.model,
            e.record,
            str(e.record_id),
            str(e.history_id),
            e.kind,
            e.actor,
            e.reason,
            changes,
        ]


@page_permission("audit-export")
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered trail as CSV, streamed a chunk of rows at a time (any size of result)."""
    visible = _require_role(request)
    flt, _, _ = history_filter_from(request.GET, visible)
    entries = sel.history_iter(user=request.user, flt=flt)
    response = StreamingHttpResponse(csv_lines(export_rows(entries)), content_type="text/csv")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="tandem-audit-{stamp}.csv"'
    return response
