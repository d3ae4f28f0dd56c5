"""Master-data console pages: accounts, the duplicate queue, merges. Thin: they read through
the selectors, act through the services, and check permissions on the server."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from core.audit import Actor
from core.errors import Refused
from core.pagination import BoundedPaginator
from core.web import PAGE_SIZE, HtmxHttpRequest, page_permission
from masterdata import selectors
from masterdata.models import (
    Account,
    CandidateStatus,
    DuplicateCandidate,
    MergeRecord,
    MergeState,
    PushState,
)
from masterdata.services import duplicates, merges

MERGE_PERM = "masterdata.merge_account"


def _require_merge(request: HttpRequest) -> Actor:
    if not request.user.has_perm(MERGE_PERM):
        raise PermissionDenied("you may not merge accounts")
    return Actor.person(request.user)


@page_permission("account-list")
def account_list(request: HtmxHttpRequest) -> HttpResponse:
    query = (request.GET.get("q") or "").strip()
    qs = Account.objects.select_related("legal_entity", "merged_into").order_by("enterprise_id")
    if query:
        qs = qs.filter(legal_name__icontains=query) | qs.filter(enterprise_id__icontains=query)
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "q": query}
    if request.htmx:
        return render(request, "masterdata/account_list.html#rows", context)
    return render(request, "masterdata/account_list.html", context)


@page_permission("account-list")
def account_detail(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    account = get_object_or_404(
        Account.objects.select_related("legal_entity", "merged_into"), enterprise_id=enterprise_id
    )
    return render(
        request,
        "masterdata/account_detail.html",
        {
            "account": account,
            "crosswalk": selectors.account_crosswalk(account=account),
            "aliases": list(account.aliases.order_by("alias")),
            "merges": selectors.account_merges(account=account),
            "merged_accounts": list(account.merged_accounts.order_by("enterprise_id")),
            "references": selectors.account_references(account=account),
        },
    )


# --- The duplicate queue ----------------------------------------------------------------------


@page_permission("duplicate-list")
def duplicate_list(request: HtmxHttpRequest) -> HttpResponse:
    status = request.GET.get("status", CandidateStatus.OPEN)
    if status not in CandidateStatus.values and status != "":
        status = CandidateStatus.OPEN
    query = (request.GET.get("q") or "").strip()
    country = (request.GET.get("country") or "").strip().upper()[:2]
    try:
        min_score = Decimal(request.GET.get("min_score") or "0") or None
    except InvalidOperation:
        min_score = None
    if min_score is not None and not (min_score.is_finite() and 0 < min_score <= 1):
        min_score = None  # a score is a probability: NaN, infinities and 1e999 mean no filter
    qs = selectors.candidates_queue(status=status, q=query, min_score=min_score, country=country)
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page, "status": status, "q": query, "country": country,
        "min_score": min_score or "", "statuses": CandidateStatus.choices,
        "can_act": request.user.has_perm(MERGE_PERM),
    }  # fmt: skip
    if request.htmx:
        return render(request, "masterdata/duplicate_list.html#rows", context)
    return render(request, "masterdata/duplicate_list.html", context)


SIDE_BY_SIDE = (
    ("legal_name", "Legal name"), ("tax_id", "Tax id"), ("domain", "Domain"),
    ("address_line1", "Address"), ("city", "City"), ("postcode", "Postcode"),
    ("country", "Country"), ("phone", "Phone"), ("email", "E-mail"),
)  # fmt: skip


@page_permission("duplicate-list")
def duplicate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = get_object_or_404(
        DuplicateCandidate.objects.select_related("account_a", "account_b", "decided_by"), pk=pk
    )
    a, b = candidate.account_a, candidate.account_b
    rows = [
        {
            "label": label,
            "a": getattr(a, name),
            "b": getattr(b, name),
            "same": getattr(a, name) == getattr(b, name),
        }
        for name, label in SIDE_BY_SIDE
    ]
    return render(
        request,
        "masterdata/duplicate_detail.html",
        {
            "candidate": candidate,
            "rows": rows,
            "evidence": _evidence_in_order(candidate.evidence),
            "prior_weight": _prior_weight(candidate),
            "can_act": request.user.has_perm(MERGE_PERM)
            and candidate.status == CandidateStatus.OPEN,
        },
    )


@require_POST
@page_permission("duplicate-list")
def duplicate_dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    actor = _require_merge(request)
    candidate = get_object_or_404(DuplicateCandidate, pk=pk)
    try:
        duplicates.candidate_dismiss(
            candidate=candidate, actor=actor, reason=(request.POST.get("reason") or "").strip()
        )
        messages.success(request, f"DUP-{pk} dismissed: it comes back only if a record changes")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("duplicate-detail", pk=pk)


@require_POST
@page_permission("duplicate-list")
def duplicate_detect(request: HttpRequest) -> HttpResponse:
    """Run the detection job now, in a worker."""
    duplicates.duplicates_detect_request(actor=_require_merge(request))
    messages.success(request, "duplicate detection queued; new candidates appear when it ends")
    return redirect("duplicate-list")


# --- Merges -----------------------------------------------------------------------------------


@page_permission("merge-list")
def merge_list(request: HtmxHttpRequest) -> HttpResponse:
    asked = request.GET.get("state") or ""
    # A state named by its label ("awaiting_approval") is the state it labels.
    by_label = {slugify(label).replace("-", "_"): value for value, label in MergeState.choices}
    state = asked if asked in MergeState.values else by_label.get(asked, "")
    qs = selectors.merge_log()
    if state:
        qs = qs.filter(state=state)
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "state": state,
        "state_label": MergeState(state).label if state else "",
        "unknown_state": asked if asked and not state else "",
        "states": MergeState.choices,
    }
    if request.htmx:
        return render(request, "masterdata/merge_list.html#rows", context)
    return render(request, "masterdata/merge_list.html", context)


def _accounts_for_merge(request: HttpRequest) -> tuple[Account, Account]:
    source = request.POST if request.method == "POST" else request.GET
    survivor = get_object_or_404(Account, enterprise_id=source.get("survivor") or "")
    loser = get_object_or_404(Account, enterprise_id=source.get("loser") or "")
    return survivor, loser


@page_permission("merge-list")
def merge_new(request: HttpRequest) -> HttpResponse:
    """The merge page: preview what moves and choose, per field, which value survives."""
    actor = _require_merge(request)
    survivor, loser = _accounts_for_merge(request)
    candidate_id = (request.POST if request.method == "POST" else request.GET).get("candidate")
    candidate = DuplicateCandidate.objects.filter(pk=candidate_id).first() if candidate_id else None
    if request.method == "POST":
        choices = {
            name: request.POST.get(f"keep_{name}", "survivor") for name in merges.MERGE_FIELDS
        }
        try:
            merge = merges.merge_request(
                survivor=survivor, loser=loser, field_choices=choices, candidate=candidate,
                actor=actor, reason=(request.POST.get("reason") or "").strip(),
            )  # fmt: skip
        except Refused as exc:
            messages.error(request, exc.message)
        else:
            if merge.state == MergeState.MERGED:
                messages.success(
                    request, f"{loser.enterprise_id} merged into {survivor.enterprise_id}"
                )
            else:
                messages.success(request, f"{merge} requested: another steward must approve it")
            return redirect("merge-detail", pk=merge.pk)
    defaults = merges.survivorship_defaults(survivor=survivor, loser=loser)
    swap = reverse("merge-new") + f"?survivor={loser.enterprise_id}&loser={survivor.enterprise_id}"
    if candidate is not None:
        swap += f"&candidate={candidate.pk}"
    return render(
        request,
        "masterdata/merge_new.html",
        {
            "survivor": survivor, "loser": loser, "candidate": candidate,
            "fields": defaults, "moves": selectors.account_references(account=loser),
            "swap_url": swap,
        },
    )  # fmt: skip


@page_permission("merge-list")
def merge_detail(request: HttpRequest, pk: int) -> HttpResponse:
    merge = get_object_or_404(selectors.merge_log(), pk=pk)
    references = _reference_rows(
        merge, list(merge.references.select_related("content_type").order_by("pk"))
    )
    user: Any = request.user
    can_act = user.has_perm(MERGE_PERM)
    return render(
        request,
        "masterdata/merge_detail.html",
        {
            "merge": merge,
            "references": references,
            "can_decide": can_act
            and merge.state == MergeState.REQUESTED
            and merge.requested_by_id != user.pk,
            "can_unmerge": can_act and merge.state == MergeState.MERGED,
            "attached_since": [
                (f"{obj._meta.label_lower}:{obj.pk}", obj)
                for obj in selectors.records_attached_since(merge=merge)
            ]
            if merge.state == MergeState.MERGED
            else [],
            "can_retry_push": can_act and merge.push_state == PushState.FAILED,
        },
    )


# Where a moved record is read, by "app_label.model": (URL name, what names it in the URL).
RECORD_PAGES = {
    "q2c.order": ("order-timeline", "enterprise_id"),
    "q2c.contract": ("contract-timeline", "enterprise_id"),
    "masterdata.account": ("account-detail", "enterprise_id"),
    "exceptions.operationalexception": ("exception-detail", "pk"),
}
# Records without an enterprise id, as people name them (the prefix of their id).
RECORD_PREFIXES = {"exceptions.operationalexception": "EXC", "masterdata.mergerecord": "MRG"}


def _reference_rows(merge: MergeRecord, references: list[Any]) -> list[dict[str, Any]]:
    """What a merge moved, as people read it: the record by its business id (linked to its
    page), the field by its name, and the accounts by their ids and names, not primary keys."""
    accounts = {
        account.pk: f"{account.enterprise_id} {account.legal_name}"
        for account in (merge.survivor, merge.loser)
    }
    rows = []
    for ref in references:
        key = f"{ref.content_type.app_label}.{ref.content_type.model}"
        label = ref.label
        if key in RECORD_PREFIXES:
            label = f"{RECORD_PREFIXES[key]}-{ref.object_id}"
        elif "#" in label:  # a record without a business id: its kind and number
            label = f"{ref.content_type.name} {ref.object_id}"
        url = ""
        if key in RECORD_PAGES:
            url_name, by = RECORD_PAGES[key]
            url = reverse(url_name, args=[label if by == "enterprise_id" else ref.object_id])
        rows.append(
            {
                "label": label,
                "url": url,
                "kind": ref.content_type.name,
                "field": ref.field.removesuffix("_id").replace("_", " "),
                "before": _moved_value(ref.before, accounts),
                "after": _moved_value(ref.after, accounts),
                "moved_back": ref.moved_back,
            }
        )
    return rows


def _moved_value(value: Any, accounts: dict[int, str]) -> str:
    """A moved reference's value: an account by its id and name, anything else as it is."""
    if isinstance(value, int) and value in accounts:
        return accounts[value]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _merge_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    actor = _require_merge(request)
    merge = get_object_or_404(MergeRecord, pk=pk)
    reason = (request.POST.get("reason") or "").strip()
    try:
        if action == "approve":
            merges.merge_approve(merge=merge, actor=actor, reason=reason)
            messages.success(request, f"{merge} approved and run")
        elif action == "reject":
            merges.merge_reject(merge=merge, actor=actor, reason=reason)
            messages.success(request, f"{merge} rejected")
        elif action == "unmerge":
            picked = _picked_records(request, merge)
            merges.account_unmerge(merge=merge, actor=actor, reason=reason, also_move=picked)
            messages.success(request, f"{merge} undone: what it moved is back on {merge.loser}")
        else:
            merges.merge_push_retry(merge=merge, actor=actor, reason=reason)
            messages.success(request, f"{merge}: push to the CRM queued again")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("merge-detail", pk=pk)


def _picked_records(request: HttpRequest, merge: MergeRecord) -> list[Any]:
    """The records attached since the merge that the steward ticked to move back too."""
    offered = {
        f"{obj._meta.label_lower}:{obj.pk}": obj
        for obj in selectors.records_attached_since(merge=merge)
    }
    return [offered[key] for key in request.POST.getlist("also_move") if key in offered]


@require_POST
@page_permission("merge-list")
def merge_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _merge_action(request, pk, "approve")


@require_POST
@page_permission("merge-list")
def merge_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _merge_action(request, pk, "reject")


@require_POST
@page_permission("merge-list")
def merge_unmerge(request: HttpRequest, pk: int) -> HttpResponse:
    return _merge_action(request, pk, "unmerge")


@require_POST
@page_permission("merge-list")
def merge_push_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _merge_action(request, pk, "push")


# --- Groups of duplicates and matching a file --------------------------------------------------


@page_permission("duplicate-groups")
def duplicate_groups(request: HtmxHttpRequest) -> HttpResponse:
    """Open candidates grouped into the organisations they make up."""
    query = (request.GET.get("q") or "").strip()
    groups = selectors.candidate_groups(q=query)
    page = BoundedPaginator(groups, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "q": query, "can_act": request.user.has_perm(MERGE_PERM)}
    if request.htmx:
        return render(request, "masterdata/duplicate_groups.html#rows", context)
    return render(request, "masterdata/duplicate_groups.html", context)


@page_permission("duplicate-groups")
def duplicate_group(request: HttpRequest, cluster: int) -> HttpResponse:
    """One group side by side; a steward merges it into the account they pick."""
    found = selectors.candidate_groups(cluster=cluster)
    if not found:
        messages.info(request, "that group is no longer open: its pairs were decided")
        return redirect("duplicate-groups")
    group = found[0]
    if request.method == "POST":
        actor = _require_merge(request)
        by_id = {account.enterprise_id: account for account in group.accounts}
        survivor = by_id.get(request.POST.get("survivor") or "")
        picked = [by_id[eid] for eid in request.POST.getlist("member") if eid in by_id]
        if survivor is None:
            messages.error(request, "pick the account that survives")
        elif not [account for account in picked if account.pk != survivor.pk]:
            messages.error(request, "tick at least one other account to merge into it")
        else:
            try:
                outcome = merges.group_merge(
                    survivor=survivor, members=picked, actor=actor,
                    reason=(request.POST.get("reason") or "").strip(),
                )  # fmt: skip
            except Refused as exc:
                messages.error(request, exc.message)
            else:
                for merge in outcome.merges:
                    messages.success(
                        request,
                        f"{merge.loser.enterprise_id} merged into {survivor.enterprise_id}"
                        if merge.state == MergeState.MERGED
                        else f"{merge}: {merge.loser.enterprise_id} awaits another steward",
                    )
                for enterprise_id, why in outcome.refused:
                    messages.error(request, f"{enterprise_id} not merged: {why}")
                return redirect("duplicate-groups")
    fields = [
        {"label": label, "values": [getattr(account, name) for account in group.accounts]}
        for name, label in SIDE_BY_SIDE
    ]
    return render(
        request,
        "masterdata/duplicate_group.html",
        {
            "group": group, "fields": fields,
            "can_act": request.user.has_perm(MERGE_PERM),
            "merge_requires_approval": settings.TANDEM_MERGE_REQUIRES_APPROVAL,
        },
    )  # fmt: skip


MATCH_FILE_MAX_BYTES = 5 * 1024 * 1024
MATCH_FILE_MAX_ROWS = 20_000
MATCH_FILE_SHOWN = 200  # pairs listed on the page; the download has them all


@page_permission("match-file")
def match_file(request: HttpRequest) -> HttpResponse:
    """Upload a CSV, map its columns, see which rows are one organisation (or which
    accounts they already are); download the pairs as id_a,id_b,score,cluster."""
    import io

    from masterdata.matching import files

    form: dict[str, Any] = {
        "id_column": "", "country": "", "against": False, "threshold": "",
        **{f"map_{name}": "" for name in files.FIELDS},
    }  # fmt: skip
    context: dict[str, Any] = {
        "fields": files.FIELDS, "form": form, "max_rows": MATCH_FILE_MAX_ROWS,
        "max_mb": MATCH_FILE_MAX_BYTES // (1024 * 1024),
    }  # fmt: skip
    context["mapping"] = [(name, "") for name in files.FIELDS]
    if request.method != "POST":
        return render(request, "masterdata/match_file.html", context)
    form.update({key: (request.POST.get(key) or "").strip() for key in form if key != "against"})
    form["against"] = request.POST.get("against") == "1"
    context["mapping"] = [(name, form[f"map_{name}"]) for name in files.FIELDS]
    upload = request.FILES.get("file")
    error = ""
    if upload is None:
        error = "choose a CSV file to upload"
    elif upload.size is not None and upload.size > MATCH_FILE_MAX_BYTES:
        error = f"the file is larger than {context['max_mb']} MB; use manage.py match_records"
    elif not form["id_column"]:
        error = "say which column holds each row's id"
    threshold = settings.TANDEM_DUPLICATE_THRESHOLD
    if not error and form["threshold"]:
        try:
            threshold = float(form["threshold"])
            if not 0 < threshold < 1:
                raise ValueError
        except ValueError:
            error = "the threshold is a probability between 0 and 1"
    if not error:
        assert upload is not None
        mapping_text = ",".join(
            f"{name}={form[f'map_{name}']}" for name in files.FIELDS if form[f"map_{name}"]
        )
        try:
            mapping = files.mapping_parse(mapping_text)
            records = files.read_file(
                upload.read(), mapping=mapping, id_column=form["id_column"],
                country=form["country"], max_rows=MATCH_FILE_MAX_ROWS,
            )  # fmt: skip
        except files.FileRefused as exc:
            error = exc.message.replace("--map", "the column map").replace("--country", "country")
    if error:
        context["error"] = error
        return render(request, "masterdata/match_file.html", context, status=400)
    if form["against"]:
        files.add_accounts(records, selectors.account_records())
    found = files.match_records(records, threshold=threshold, against_accounts=form["against"])
    if request.POST.get("format") == "csv":
        out = io.StringIO()
        files.pairs_write(found.pairs, out)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="pairs.csv"'
        return response
    context["summary"] = found.summary
    context["rows"] = [
        {
            "id_a": id_a, "id_b": id_b, "score": f"{score:.3f}", "cluster": cluster,
            "name_a": records.names[pair.a], "name_b": records.names[pair.b],
        }
        for (id_a, id_b, score, cluster), pair in zip(
            found.pairs[:MATCH_FILE_SHOWN], found.scored[:MATCH_FILE_SHOWN], strict=True
        )
    ]  # fmt: skip
    return render(request, "masterdata/match_file.html", context)


def _prior_weight(candidate: DuplicateCandidate) -> Decimal | None:
    """The prior's bits: the match weight less every field's."""
    if candidate.match_weight is None:
        return None
    fields = sum(
        Decimal(str(item.get("weight", 0))) for item in candidate.evidence.values()
        if isinstance(item, dict)
    )  # fmt: skip
    return (candidate.match_weight - fields).quantize(Decimal("0.01"))


def _evidence_in_order(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    """The fields in the order they are compared (the database keeps JSON keys its own way)."""
    from masterdata.matching.compare import FIELDS

    known = [(name, evidence[name]) for name in FIELDS if name in evidence]
    return known + [(name, item) for name, item in evidence.items() if name not in FIELDS]
