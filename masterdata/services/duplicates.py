"""Writes of duplicate detection: the candidate pairs it stores, and a steward's dismissal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from core.audit import Actor, audit_context
from core.errors import reason_require
from masterdata.duplicates import AccountRow, duplicates_find, pair_fingerprint
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
    dismissed (its fingerprint differs); a merged pair is left alone.
    """
    started = time.perf_counter()
    cutoff = settings.TANDEM_DUPLICATE_THRESHOLD if threshold is None else threshold
    rows = _active_rows()
    read = time.perf_counter()
    by_pk = {row.pk: row for row in rows}
    result = duplicates_find(rows, threshold=cutoff)
    found = time.perf_counter()
    existing = {
        (candidate.account_a_id, candidate.account_b_id): candidate
        for candidate in DuplicateCandidate.objects.filter(
            account_a__status=AccountStatus.ACTIVE, account_b__status=AccountStatus.ACTIVE
        )
    }
    now = timezone.now()
    reason = "duplicate detection"
    new: list[DuplicateCandidate] = []
    changed: list[DuplicateCandidate] = []
    reopened = 0
    for pair in result.pairs:
        fingerprint = pair_fingerprint(by_pk[pair.a], by_pk[pair.b])
        score = Decimal(str(pair.score)).quantize(Decimal("0.001"))
        weight = Decimal(str(pair.match_weight)).quantize(Decimal("0.01"))
        pattern = CandidatePattern.SITES if pair.sites else CandidatePattern.DUPLICATE
        candidate = existing.get((pair.a, pair.b))
        if candidate is None:
            new.append(
                DuplicateCandidate(
                    account_a_id=pair.a, account_b_id=pair.b, score=score,
                    evidence=pair.evidence, fingerprint=fingerprint, detected_at=now,
                    match_weight=weight, pattern=pattern, cluster=pair.cluster,
                )
            )  # fmt: skip
            continue
        if candidate.status == CandidateStatus.MERGED:
            continue
        if candidate.status == CandidateStatus.DISMISSED:
            if candidate.fingerprint == fingerprint:
                continue  # dismissed, and nothing compared has changed since
            candidate.status = CandidateStatus.OPEN
            candidate.decided_at = None
            candidate.decided_by = None
            candidate.decision_reason = ""
            reopened += 1
        elif (
            candidate.fingerprint == fingerprint
            and candidate.score == score
            and (candidate.match_weight, candidate.pattern, candidate.cluster)
            == (weight, pattern, pair.cluster)
        ):
            continue
        candidate.score = score
        candidate.match_weight = weight
        candidate.pattern = pattern
        candidate.cluster = pair.cluster
        candidate.evidence = pair.evidence
        candidate.fingerprint = fingerprint
        candidate.detected_at = now
        changed.append(candidate)
    with transaction.atomic(), audit_context(actor=actor, reason=reason), paused_gc():
        if new:
            bulk_create_with_history(
                new, DuplicateCandidate, batch_size=2000, default_user=actor.user,
                default_change_reason=reason,
            )  # fmt: skip
        if changed:
            bulk_update_with_history(
                changed, DuplicateCandidate,
                ["score", "evidence", "fingerprint", "detected_at", "status", "decided_at",
                 "decided_by", "decision_reason", "match_weight", "pattern", "cluster"],
                batch_size=2000, default_user=actor.user, default_change_reason=reason,
            )  # fmt: skip
    return DetectionSummary(
        accounts=result.accounts,
        comparisons=result.blocked_comparisons,
        pairs_scored=result.pairs_scored,
        found=len(result.pairs),
        created=len(new),
        reopened=reopened,
        updated=len(changed) - reopened,
        seconds=round(time.perf_counter() - started, 2),
        timings={
            "read": round(read - started, 2),
            **{key: round(value, 2) for key, value in result.timings.items()},
            "store": round(time.perf_counter() - found, 2),
        },
        sites=sum(pair.sites for pair in result.pairs),
        clusters=len(result.clusters),
        by_pass=result.by_pass,
        reduction_ratio=result.reduction_ratio,
        model=None
        if result.model is None
        else {
            "prior": result.model.prior,
            "iterations": result.model.iterations,
            "converged": result.model.converged,
            "table": result.model.table(),
        },
    )


def duplicates_detect_request(*, actor: Actor) -> None:
    """A steward asks for detection now: it runs in a worker once this transaction commits."""
    steward_require(actor)
    from masterdata.tasks import detect_duplicates

    transaction.on_commit(lambda: detect_duplicates.delay())


def candidate_dismiss(
    *, candidate: DuplicateCandidate, actor: Actor, reason: str
) -> DuplicateCandidate:
    """Not one customer: the pair stays out of the queue until either account changes."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = DuplicateCandidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.status != CandidateStatus.OPEN:
            raise ValidationError(f"{locked} is {locked.status}; only an open pair is dismissed")
        locked.status = CandidateStatus.DISMISSED
        locked.decided_at = timezone.now()
        locked.decided_by = actor.user
        locked.decision_reason = reason
        locked.save()
    return locked
