"""What waits for one person, for their home page: assigned to me, waiting for my approval,
overdue against SLA, new since my last visit, and for data stewards the master-data queue.

Every part is read only when the person's role may read what it lists."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from core.problems import Category
from core.roles import role_of
from exceptions.models import OPEN_STATES, OperationalException, Replay, ReplayState
from masterdata.models import CandidateStatus, DuplicateCandidate, MergeRecord, MergeState

LIST_LIMIT = 10

# What each role may and may not do, in one line each (the home page says it).
ROLE_SCOPE: dict[str, tuple[str, str]] = {
    "sales_ops": (
        "read orders, contracts and accounts; hold, release and cancel orders; work the "
        "exception queue (retry, assign, comment) and request replays",
        "resolve or ignore exceptions, approve replays, merge accounts",
    ),
    "finance_ops": (
        "read every commercial and financial record; work and resolve exceptions; approve or "
        "reject other people's replays; void invoices and cancel contracts",
        "approve your own replay requests, merge accounts, hold orders",
    ),
    "data_steward": (
        "fix accounts, crosswalk entries and product mappings; review duplicate pairs, merge "
        "and unmerge accounts; work and resolve exceptions",
        "read orders, contracts or invoices, approve replays",
    ),
    "integration_support": (
        "read every record, workflow run and outbound call; work and resolve exceptions; "
        "request replays",
        "approve replays, hold orders, merge accounts",
    ),
    "auditor": (
        "read every record, its full history and the operator-action log, and export it",
        "change anything: the console is read-only for you",
    ),
    "admin": (
        "everything, including the Django admin",
        "approve your own replay or merge requests (another person must)",
    ),
}


@dataclass
class MyWork:
    role: str
    may: str
    may_not: str
    since: dt.datetime | None  # the previous visit (None: the first)
    assigned: list[OperationalException] = field(default_factory=list)
    approvals: list[tuple[str, Any]] = field(default_factory=list)  # ("replay"/"merge", it)
    overdue: list[OperationalException] = field(default_factory=list)
    new: list[OperationalException] = field(default_factory=list)
    master_data: list[OperationalException] = field(default_factory=list)
    duplicates: list[DuplicateCandidate] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _open_exceptions() -> QuerySet[OperationalException]:
    return OperationalException.objects.filter(state__in=OPEN_STATES).select_related(
        "order", "assignee"
    )


def _team_q(role: str) -> Q:
    """The exceptions a role's team owns (admins and auditors: every team's)."""
    return Q(owner_team=role) if role in {"sales_ops", "finance_ops", "data_steward",
                                          "integration_support"} else Q()  # fmt: skip


def _listed(qs: QuerySet[Any], counts: dict[str, int], name: str) -> list[Any]:
    rows = list(qs[: LIST_LIMIT + 1])
    counts[name] = qs.count() if len(rows) > LIST_LIMIT else len(rows)
    return rows[:LIST_LIMIT]


def approvals_waiting(*, user: Any) -> QuerySet[Replay]:
    """Replays another person asked for that ``user`` may approve, oldest first."""
    if not user.has_perm("exceptions.approve_replay"):
        return Replay.objects.none()
    return (
        Replay.objects.filter(state=ReplayState.REQUESTED)
        .exclude(requested_by=user)
        .select_related("requested_by", "workflow_run")
        .order_by("requested_at", "pk")
    )


def merges_waiting(*, user: Any) -> QuerySet[MergeRecord]:
    """Merges another steward asked for that ``user`` may approve, oldest first."""
    if not (settings.TANDEM_MERGE_REQUIRES_APPROVAL and user.has_perm("masterdata.merge_account")):
        return MergeRecord.objects.none()
    return (
        MergeRecord.objects.filter(state=MergeState.REQUESTED)
        .exclude(requested_by=user)
        .select_related("survivor", "loser", "requested_by")
        .order_by("requested_at", "pk")
    )


def waiting_count(*, user: Any) -> int:
    """How many decisions wait for ``user`` (the navigation's badge)."""
    return approvals_waiting(user=user).count() + merges_waiting(user=user).count()


def my_work(*, user: Any, since: dt.datetime | None, now: dt.datetime) -> MyWork:
    """Everything waiting for ``user``; ``since`` is their previous visit."""
    role = role_of(user)
    may, may_not = ROLE_SCOPE.get(role, ("", ""))
    work = MyWork(role=role, may=may, may_not=may_not, since=since)
    counts = work.counts
    if user.has_perm("exceptions.view_operationalexception"):
        open_qs = _open_exceptions()
        team = open_qs.filter(_team_q(role))
        work.assigned = _listed(
            open_qs.filter(assignee=user).order_by("sla_due_at", "pk"), counts, "assigned"
        )
        work.overdue = _listed(
            team.filter(sla_due_at__lt=now).order_by("sla_due_at", "pk"), counts, "overdue"
        )
        if since is not None:
            work.new = _listed(
                team.filter(created_at__gt=since).order_by("-created_at", "-pk"), counts, "new"
            )
        if role == "data_steward":
            work.master_data = _listed(
                open_qs.filter(category__in=[Category.MASTER_DATA, Category.MAPPING]).order_by(
                    "sla_due_at", "pk"
                ),
                counts,
                "master_data",
            )
    approvals: list[tuple[str, Any]] = [
        *(("replay", replay) for replay in approvals_waiting(user=user)[: LIST_LIMIT + 1]),
        *(("merge", merge) for merge in merges_waiting(user=user)[: LIST_LIMIT + 1]),
    ]
    counts["approvals"] = len(approvals)
    work.approvals = approvals[:LIST_LIMIT]
    if role == "data_steward" or (
        role != "auditor"
        and user.has_perm("masterdata.view_duplicatecandidate")
        and user.has_perm("masterdata.merge_account")
    ):
        work.duplicates = _listed(
            DuplicateCandidate.objects.filter(status=CandidateStatus.OPEN)
            .select_related("account_a", "account_b")
            .order_by("-score", "pk"),
            counts,
            "duplicates",
        )
    return work
