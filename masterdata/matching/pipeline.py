"""The whole pipeline over normalized records: block, compare, learn, score, cluster."""

from __future__ import annotations

import gc
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from masterdata.matching.blocking import Blocking, block
from masterdata.matching.clusters import clusters, is_sites
from masterdata.matching.compare import FIELDS, MISSING, TokenWeights, compare, describe
from masterdata.matching.model import TF_FIELDS, MatchModel, _value_of, fit, survey
from masterdata.matching.normalize import Record


@dataclass(frozen=True)
class ScoredPair:
    a: int  # the records' pks, a < b
    b: int
    probability: float
    match_weight: float  # bits, prior included
    levels: tuple[int, ...]
    weights: tuple[float, ...]  # each field's bits, term-frequency adjusted
    sites: bool  # "sites of one organisation": not a duplicate by default

    @property
    def score(self) -> float:
        return round(self.probability, 3)


@dataclass
class MatchResult:
    pairs: list[ScoredPair]  # every pair at or above the threshold, best first
    model: MatchModel
    blocking: Blocking
    records: int
    clusters: list[list[int]]  # pks, each group sorted; sites pairs never join a group
    timings: dict[str, float] = field(default_factory=dict)
    weights: TokenWeights | None = None

    @property
    def duplicates(self) -> list[ScoredPair]:
        """The pairs that are one organisation by default (sites left out)."""
        return [pair for pair in self.pairs if not pair.sites]

    def cluster_of(self) -> dict[int, int]:
        """pk → the cluster's number (1, 2, … in order of each cluster's smallest pk)."""
        return {pk: number for number, group in enumerate(self.clusters, 1) for pk in group}


def logit2(probability: float) -> float:
    probability = min(max(probability, 1e-12), 1 - 1e-12)
    return math.log2(probability / (1 - probability))


def evidence(
    pair: ScoredPair, model: MatchModel, a: Record, b: Record, weights: TokenWeights
) -> dict[str, Any]:
    """What each field contributed, in the terms the steward reads: the comparison level,
    m and u of that level, and its bits of match weight (term-frequency adjusted)."""
    similarities = describe(a, b, weights)
    out: dict[str, Any] = {}
    for index, name in enumerate(FIELDS):
        level = pair.levels[index]
        item: dict[str, Any] = {
            "result": "missing" if level == MISSING else _label(name, level),
            "weight": round(pair.weights[index], 2),
        }
        if level != MISSING:
            item["m"] = round(model.m[name][level], 4)
            item["u"] = float(f"{model.u[name][level]:.3g}")
            if level == 0 and name in TF_FIELDS:
                value_u = model.value_u(name, _value_of(a, name))
                if value_u != model.u[name][0]:
                    item["u_value"] = float(f"{value_u:.3g}")  # term frequency
        if name in similarities:
            item["similarity"] = similarities[name]
        out[name] = item
    return out


def _label(name: str, level: int) -> str:
    from masterdata.matching.compare import LEVELS

    return LEVELS[name][level]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Without Python's cycle collector for a while: matching allocates millions of small
    tuples and lists, none in a cycle, and the collector walking them took half the
    blocking time on 100k accounts."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def match(records: Sequence[Record], *, threshold: float) -> MatchResult:
    """Every pair of ``records`` whose match probability reaches ``threshold``."""
    with paused_gc():
        return _match(records, threshold=threshold)


def _match(records: Sequence[Record], *, threshold: float) -> MatchResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    weights = TokenWeights(record.name for record in records)
    blocking = block(records, weights)
    timings["blocking"] = time.perf_counter() - started

    mark = time.perf_counter()
    n = len(records)
    interned: dict[tuple[int, ...], tuple[int, ...]] = {}
    compared: list[tuple[int, int, tuple[int, ...]]] = []
    patterns: Counter[tuple[int, ...]] = Counter()
    for code in blocking.pairs:
        i, j = divmod(code, n)
        levels = compare(records[i], records[j], weights)
        levels = interned.setdefault(levels, levels)
        patterns[levels] += 1
        compared.append((i, j, levels))
    timings["comparing"] = time.perf_counter() - mark

    mark = time.perf_counter()
    model = fit(patterns, records=n, population=survey(records, weights))
    timings["learning"] = time.perf_counter() - mark

    mark = time.perf_counter()
    floor = logit2(threshold)
    prior_bits = model.prior_weight
    pattern_bits = {
        pattern: prior_bits + sum(model.level_weight(FIELDS[k], lv) for k, lv in enumerate(pattern))
        for pattern in patterns
    }
    # Term frequency only lowers an exact agreement's bits: a pattern that cannot reach the
    # threshold without it never will with it.
    found: list[ScoredPair] = []
    for i, j, levels in compared:
        if pattern_bits[levels] < floor:
            continue
        a, b = records[i], records[j]
        bits = model.weights(levels, a, b)
        total = prior_bits + sum(bits)
        if total < floor:
            continue
        first, second = (a, b) if a.pk < b.pk else (b, a)
        found.append(
            ScoredPair(
                first.pk, second.pk, model.probability(total), round(total, 2), levels,
                tuple(bits), is_sites(levels, a, b),
            )
        )  # fmt: skip
    found.sort(key=lambda pair: (-pair.probability, -pair.match_weight, pair.a, pair.b))
    timings["scoring"] = time.perf_counter() - mark

    mark = time.perf_counter()
    by_pk = {record.pk: record for record in records}

    def evidence_weight(x: int, y: int) -> float:
        left, right = by_pk[x], by_pk[y]
        return sum(model.weights(compare(left, right, weights), left, right))

    groups = clusters(
        {(pair.a, pair.b): pair.match_weight for pair in found if not pair.sites},
        evidence_weight,
    )
    timings["clustering"] = time.perf_counter() - mark
    return MatchResult(
        pairs=found, model=model, blocking=blocking, records=n, clusters=groups,
        timings={key: round(value, 2) for key, value in timings.items()}, weights=weights,
    )  # fmt: skip
