"""Duplicate-account detection: stored accounts through the matching pipeline.

``masterdata.matching`` does the work (organisation-aware normalization, blocking passes,
comparison levels, Fellegi-Sunter weights learned by EM on the tenant's own accounts,
clusters); this module turns accounts into its records and its pairs into candidates with
the evidence a steward reads: each field's comparison level, its m and u, and the bits it
adds to (or takes from) the match weight. ``TANDEM_DUPLICATE_THRESHOLD`` is a match
probability; see README, "Master data: duplicates, merge, unmerge".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from masterdata.matching.blocking import pairs_completeness
from masterdata.matching.model import MatchModel
from masterdata.matching.normalize import Record, pair_fingerprint, record
from masterdata.matching.pipeline import MatchResult, evidence, match, paused_gc

__all__ = [
    "AccountRow",
    "DetectionResult",
    "PairScore",
    "Quality",
    "account_row",
    "duplicates_find",
    "evaluate",
    "pair_fingerprint",
    "synthetic_rows",
]

AccountRow = Record


def account_row(
    *,
    pk: int,
    country: str,
    legal_name: str,
    name_key: str,
    tax_id_key: str,
    domain_key: str,
    address_line1: str,
    address_line2: str,
    city: str,
    postcode: str,
    phone: str,
    email: str,
) -> Record:
    """A stored account as a matching record (its stored keys are reused, not recomputed)."""
    return record(
        pk=pk, legal_name=legal_name, country=country, address_line1=address_line1,
        address_line2=address_line2, city=city, postcode=postcode, phone=phone, email=email,
        tax_id_normalized=tax_id_key, domain_normalized=domain_key,
        name_key_normalized=name_key,
    )  # fmt: skip


@dataclass(frozen=True)
class PairScore:
    a: int
    b: int
    score: float  # match probability, 0..1
    evidence: dict[str, Any]
    match_weight: float  # bits, prior included
    sites: bool  # "sites of one organisation": flagged, left out of clusters
    cluster: int | None  # the smallest account pk of the coherent group holding both


@dataclass
class DetectionResult:
    pairs: list[PairScore]
    accounts: int
    blocked_comparisons: int  # name comparisons made inside blocks (in C)
    pairs_scored: int  # distinct pairs compared on every field
    timings: dict[str, float] = field(default_factory=dict)
    model: MatchModel | None = None
    clusters: list[list[int]] = field(default_factory=list)
    by_pass: dict[str, int] = field(default_factory=dict)
    reduction_ratio: float = 1.0


def _pairs(result: MatchResult, rows: Sequence[Record]) -> list[PairScore]:
    by_pk = {row.pk: row for row in rows}
    cluster_of = {pk: group[0] for group in result.clusters for pk in group}
    assert result.weights is not None
    out = []
    for pair in result.pairs:
        cluster = cluster_of.get(pair.a)
        out.append(
            PairScore(
                a=pair.a, b=pair.b, score=pair.score,
                evidence=evidence(pair, result.model, by_pk[pair.a], by_pk[pair.b],
                                  result.weights),
                match_weight=pair.match_weight, sites=pair.sites,
                cluster=cluster if cluster is not None and cluster == cluster_of.get(pair.b)
                else None,
            )
        )  # fmt: skip
    return out


def duplicates_find(rows: Sequence[Record], *, threshold: float) -> DetectionResult:
    """Every pair among ``rows`` whose match probability reaches ``threshold``, best first."""
    result = match(rows, threshold=threshold)
    started = time.perf_counter()
    with paused_gc():
        pairs = _pairs(result, rows)
    timings = {**result.timings, "evidence": round(time.perf_counter() - started, 2)}
    return DetectionResult(
        pairs=pairs, accounts=result.records, blocked_comparisons=result.blocking.comparisons,
        pairs_scored=len(result.blocking.pairs), timings=timings, model=result.model,
        clusters=result.clusters, by_pass=result.blocking.by_pass,
        reduction_ratio=result.blocking.reduction_ratio,
    )  # fmt: skip


# --- Measuring it -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    precision: float
    recall: float
    f1: float
    true_pairs: int
    found: int
    pairs_completeness: float  # true pairs blocking kept
    reduction_ratio: float
    seconds: float


def synthetic_rows(accounts: Sequence[Any]) -> list[Record]:
    """Records for ``masterdata.synthetic`` accounts (pk = position + 1)."""
    return [
        record(
            pk=index,
            legal_name=account.legal_name,
            country=account.country,
            tax_id=account.tax_id,
            domain=account.domain,
            address_line1=account.address_line1,
            city=account.city,
            postcode=account.postcode,
            phone=account.phone,
            email=account.email,
        )
        for index, account in enumerate(accounts, start=1)
    ]


def quality_of(
    result: MatchResult, rows: Sequence[Record], truth: set[frozenset[int]], *, seconds: float
) -> Quality:
    """Precision, recall and F1 of the duplicate pairs (sites left out, as by default)
    against ``truth`` (pairs of pks), and the blocking's pairs completeness."""
    found = {frozenset((pair.a, pair.b)) for pair in result.duplicates}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    index_of = {row.pk: index for index, row in enumerate(rows)}
    completeness = pairs_completeness(
        result.blocking, [(index_of[min(pair)], index_of[max(pair)]) for pair in truth]
    )
    return Quality(
        precision=round(precision, 4), recall=round(recall, 4), f1=round(f1, 4),
        true_pairs=len(truth), found=len(found), pairs_completeness=round(completeness, 4),
        reduction_ratio=round(result.blocking.reduction_ratio, 6), seconds=round(seconds, 2),
    )  # fmt: skip


def evaluate(labelled: Any, *, threshold: float) -> Quality:
    """Precision and recall of detection on a ``masterdata.synthetic.LabelledSet``."""
    rows = synthetic_rows(labelled.accounts)
    pk_of = {account.key: index for index, account in enumerate(labelled.accounts, start=1)}
    truth = {frozenset(pk_of[key] for key in pair) for pair in labelled.duplicate_pairs}
    started = time.perf_counter()
    result = match(rows, threshold=threshold)
    return quality_of(result, rows, truth, seconds=time.perf_counter() - started)
