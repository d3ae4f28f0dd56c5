"""Writes of duplicate detection: the candidate pairs it stores, and a steward's dismissal."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from core.audit import Actor, audit_context
from core.errors import Refused, reason_require
from masterdata.duplicates import (
    AccountRow,
    DetectionResult,
    PairScore,
    duplicates_find,
    pair_fingerprint,
)
from masterdata.matching.pipeline import paused_gc
from masterdata.models import (
    AccountStatus,
    CandidatePattern,
    CandidateStatus,
    DuplicateCandidate,
)
from masterdata.selectors import account_records
from masterdata.services.records import steward_require


@dataclass(frozen=True)
class DetectionSummary:
    accounts: int
    comparisons: int
    pairs_scored: int
    found: int
    created: int
    reopened: int
    updated: int
    seconds: float
    timings: dict[str, float]
    sites: int = 0  # of the candidates found, flagged as sites of one organisation
    clusters: int = 0  # groups of two or more accounts that hold together
    by_pass: dict[str, int] | None = None  # pairs each blocking pass added
    reduction_ratio: float = 1.0
    model: dict[str, Any] | None = None  # the learned prior, m and u, EM iterations


def _active_rows() -> list[AccountRow]:
    return [row for row, _, _ in account_records()]


def duplicates_detect(*, actor: Actor, threshold: float | None = None) -> DetectionSummary:
    """Score every active account against its likely twins and store the candidate pairs.

    A new pair is stored open; an open pair gets its new score and evidence; a dismissed pair
    comes back (open) only when either account's compared fields changed since it was
    dismissed (its fingerprint differs); a merged pair is left alone. The accounts are read
    and scored outside any transaction; the pairs are stored in one, with history rows for
    ``actor``. ``threshold`` defaults to ``TANDEM_DUPLICATE_THRESHOLD``. Refuses nothing.
    Returns what was found and stored, with timings.
    """
    started = time.perf_counter()
    cutoff = settings.TANDEM_DUPLICATE_THRESHOLD if threshold is None else threshold
    rows = _active_rows()
    read = time.perf_counter()
    result = duplicates_find(rows, threshold=cutoff)
    found = time.perf_counter()
    changes = _candidate_changes(
        result.pairs, rows={row.pk: row for row in rows}, now=timezone.now()
    )
    _candidates_store(changes, actor=actor, reason="duplicate detection")
    return DetectionSummary(
        accounts=result.accounts,
        comparisons=result.blocked_comparisons,
        pairs_scored=result.pairs_scored,
        found=len(result.pairs),
        created=len(changes.new),
        reopened=changes.reopened,
        updated=len(changes.changed) - changes.reopened,
        seconds=round(time.perf_counter() - started, 2),
        timings={
            "read": round(read - started, 2),
            **{key: round(value, 2) for key, value in result.timings.items()},
            "store": round(time.perf_counter() - found, 2),
        },
        **_learned(result),
    )


def _learned(result: DetectionResult) -> dict[str, Any]:
    """What the summary says of sites, groups, blocking and the learned model."""
    model = result.model
    return {
        "sites": sum(pair.sites for pair in result.pairs),
        "clusters": len(result.clusters),
        "by_pass": result.by_pass,
        "reduction_ratio": result.reduction_ratio,
        "model": None
        if model is None
        else {
            "prior": model.prior,
            "iterations": model.iterations,
            "converged": model.converged,
            "table": model.table(),
        },
    }


@dataclass
class _CandidateChanges:
    new: list[DuplicateCandidate] = field(default_factory=list)
    changed: list[DuplicateCandidate] = field(default_factory=list)  # reopened ones included
    reopened: int = 0


def _candidate_changes(
    pairs: list[PairScore], *, rows: dict[int, AccountRow], now: dt.datetime
) -> _CandidateChanges:
    """The candidates to create and to update for the pairs found (nothing is saved)."""
    existing = {
        (candidate.account_a_id, candidate.account_b_id): candidate
        for candidate in DuplicateCandidate.objects.filter(
            account_a__status=AccountStatus.ACTIVE, account_b__status=AccountStatus.ACTIVE
        )
    }
    changes = _CandidateChanges()
    for pair in pairs:
        fingerprint = pair_fingerprint(rows[pair.a], rows[pair.b])
        score = Decimal(str(pair.score)).quantize(Decimal("0.001"))
        candidate = existing.get((pair.a, pair.b))
        if candidate is None:
            changes.new.append(
                DuplicateCandidate(
                    account_a_id=pair.a, account_b_id=pair.b, score=score,
                    evidence=pair.evidence, fingerprint=fingerprint, detected_at=now,
                    match_weight=_weight(pair), pattern=_pattern(pair), cluster=pair.cluster,
                )
            )  # fmt: skip
            continue
        outcome = _candidate_rescore(
            candidate, pair=pair, score=score, fingerprint=fingerprint, now=now
        )
        if outcome is not None:
            changes.changed.append(candidate)
        if outcome == "reopened":
            changes.reopened += 1
    return changes


def _weight(pair: PairScore) -> Decimal:
    return Decimal(str(pair.match_weight)).quantize(Decimal("0.01"))


def _pattern(pair: PairScore) -> str:
    return CandidatePattern.SITES if pair.sites else CandidatePattern.DUPLICATE


def _candidate_rescore(
    candidate: DuplicateCandidate,
    *,
    pair: PairScore,
    score: Decimal,
    fingerprint: str,
    now: dt.datetime,
) -> str | None:
    """Give a stored pair its new score and evidence (in memory): "reopened" for a dismissed
    pair whose accounts changed since, "updated" for an open one that scores differently,
    None when it stays as it is (merged, or nothing compared has changed)."""
    if candidate.status == CandidateStatus.MERGED:
        return None
    outcome = "updated"
    if candidate.status == CandidateStatus.DISMISSED:
        if candidate.fingerprint == fingerprint:
            return None  # dismissed, and nothing compared has changed since
        candidate.status = CandidateStatus.OPEN
        candidate.decided_at = None
        candidate.decided_by = None
        candidate.decision_reason = ""
        outcome = "reopened"
    elif (
        candidate.fingerprint == fingerprint
        and candidate.score == score
        and (candidate.match_weight, candidate.pattern, candidate.cluster)
        == (_weight(pair), _pattern(pair), pair.cluster)
    ):
        return None
    candidate.score = score
    candidate.match_weight = _weight(pair)
    candidate.pattern = _pattern(pair)
    candidate.cluster = pair.cluster
    candidate.evidence = pair.evidence
    candidate.fingerprint = fingerprint
    candidate.detected_at = now
    return outcome


def _candidates_store(changes: _CandidateChanges, *, actor: Actor, reason: str) -> None:
    """Create and update the candidates in one transaction, with history (history-aware bulk
    writes, never plain ``bulk_*``)."""
    with transaction.atomic(), audit_context(actor=actor, reason=reason), paused_gc():
        if changes.new:
            bulk_create_with_history(
                changes.new, DuplicateCandidate, batch_size=2000, default_user=actor.user,
                default_change_reason=reason,
            )  # fmt: skip
        if changes.changed:
            bulk_update_with_history(
                changes.changed, DuplicateCandidate,
                ["score", "evidence", "fingerprint", "detected_at", "status", "decided_at",
                 "decided_by", "decision_reason", "match_weight", "pattern", "cluster"],
                batch_size=2000, default_user=actor.user, default_change_reason=reason,
            )  # fmt: skip


def duplicates_detect_request(*, actor: Actor) -> None:
    """A steward asks for detection now: it runs in a worker once this transaction commits.
    Raises ``PermissionDenied`` for anyone but a steward; refuses nothing else."""
    steward_require(actor)
    from masterdata.tasks import detect_duplicates

    transaction.on_commit(lambda: detect_duplicates.delay())


def candidate_dismiss(
    *, candidate: DuplicateCandidate, actor: Actor, reason: str
) -> DuplicateCandidate:
    """Not one customer: the pair stays out of the queue until either account changes.

    Locks the pair. Refuses a blank reason (``ReasonRequired``) and a pair that is not open
    (``STATE``); raises ``PermissionDenied`` for anyone but a steward. Returns the pair as
    saved."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = DuplicateCandidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.status != CandidateStatus.OPEN:
            raise Refused(
                f"{locked} is {locked.status}; only an open pair is dismissed",
                kind=Refused.Kind.STATE,
            )
        locked.status = CandidateStatus.DISMISSED
        locked.decided_at = timezone.now()
        locked.decided_by = actor.user
        locked.decision_reason = reason
        locked.save()
    return locked
