"""Fellegi-Sunter weights learned from the records themselves.

For each field and comparison level, ``m`` is the probability of the level among pairs that
are one organisation and ``u`` among pairs that are not; a level weighs ``log2(m / u)``
bits, and a pair's match weight is the prior's bits plus every present field's (a missing
field adds nothing). The match probability is ``1 / (1 + 2^-weight)``.

How each is estimated (the way splink does it, with two corrections):

- ``u`` from the whole population: an exact agreement's from how often each value occurs
  (two records picked at random share a value with probability Σ c(c-1) / n(n-1)), every
  other level's from a seeded sample of random pairs (a level the sample never met counts
  as half an observation). Those rates count the duplicates too; where they are counted
  over every pair, the matches EM finds are taken out again (``rounds`` times), since in a
  list merged from several systems most pairs sharing an address are duplicates.
- ``m`` by expectation-maximisation in sessions over the pairs blocking kept: each session
  takes the pairs agreeing on one identifier (phone, tax id, e-mail address) and learns the
  other fields' ``m``, and its own non-matches' ``u`` (pairs sharing a phone that are not
  one site are mostly one organisation's other sites, not random pairs); only ``m`` leaves
  the session. Name agreement teaches only what the identifiers cannot. The comparison
  vectors are counted once per distinct pattern, so an iteration costs a few thousand
  operations.
- the prior (the share of all pairs that are matches) by EM with ``m`` and ``u`` held;
  pairs blocking did not keep count as non-matches, which is what blocking assumes anyway.
- Term frequency: an exact agreement on a value held by more records than one organisation
  has (``TF_GROUP``: a common name, a central phone, a parent's domain, a busy postcode) is
  weighed with that value's own ``u``, the share of records holding it beyond those.

Defaults (``PRIOR_M``, ``PRIOR_U``) act as pseudo-observations, so a tenant with a handful of
accounts gets sensible weights and a large one gets its own.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from masterdata.matching.compare import FIELDS, LEVELS, MISSING, TokenWeights, compare
from masterdata.matching.normalize import Record

PRIOR_M: dict[str, tuple[float, ...]] = {
    "name": (0.5, 0.25, 0.1, 0.1, 0.05),
    "tax_id": (0.95, 0.05),
    "phone": (0.85, 0.05, 0.1),
    "address": (0.6, 0.15, 0.05, 0.05, 0.15),
    "domain": (0.5, 0.4, 0.1),
    "country": (0.99, 0.01),
}
PRIOR_U: dict[str, tuple[float, ...]] = {
    "name": (1e-5, 2e-5, 1e-4, 5e-3, 0.99487),
    "tax_id": (1e-6, 1 - 1e-6),
    "phone": (1e-5, 1e-4, 1 - 1.1e-4),
    "address": (1e-5, 1e-5, 1e-3, 1e-3, 1 - 2.02e-3),
    "domain": (1e-5, 1e-4, 1 - 1.1e-4),
    "country": (0.3, 0.7),
}
M_PSEUDO = 10.0  # pseudo-matches the default m counts for
U_PSEUDO = 1000.0  # pseudo-pairs the default u counts for
PRIOR_SHARE = 1e-4  # the default share of pairs that are matches
PRIOR_PSEUDO = 1000.0  # pseudo-pairs that default counts for
U_SESSION_PSEUDO = 20.0  # pseudo-pairs the population's u counts for inside a session
U_SAMPLE = 30_000  # random pairs drawn to measure u
MIN_PROBABILITY = 1e-9
EM_MAX_ITERATIONS = 200
EM_TOLERANCE = 1e-6
# EM sessions (splink's training): each runs over the blocked pairs that agree on one field
# and estimates m of the other fields only; agreement on what selected the pairs says nothing
# of match status inside the session, the other fields do. The record-level identifiers
# (phone, tax id, the same e-mail address) select pairs that are nearly all one
# organisation, so they teach the other fields' m; name agreement also selects a group's
# subsidiaries and one organisation's sites, so it only teaches what the identifiers could
# not (the identifiers' own m, and any field too rarely seen with them).
PRIMARY_SESSIONS = ("phone", "tax_id", "domain")
FALLBACK_SESSION = "name"
MIN_SUPPORT = 30.0  # expected matches holding a field before its m is taken as learned


def _value_of(record: Record, field_name: str) -> str:
    """The value an exact agreement (level 0) is about, for term frequencies."""
    if field_name == "name":
        return record.name.key
    if field_name == "address":
        key = record.address.building_key
        return f"{key}|{record.postcode}" if key else ""
    if field_name == "domain":
        return record.email
    return str(getattr(record, field_name))


TF_FIELDS = ("name", "tax_id", "phone", "address", "domain")
# Records one organisation may have among the records (one per source system): a value
# held by more is common, and an agreement on it weighs less.
TF_GROUP = 4


@dataclass
class MatchModel:
    m: dict[str, list[float]]
    u: dict[str, list[float]]
    prior: float  # probability that two records picked at random are one organisation
    iterations: int = 0
    converged: bool = False
    pairs: int = 0  # pairs the model was fitted on
    value_counts: dict[str, Counter[str]] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)  # records holding each field

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def level_weight(self, field_name: str, level: int) -> float:
        if level == MISSING:
            return 0.0
        return math.log2(self.m[field_name][level] / self.u[field_name][level])

    def value_u(self, field_name: str, value: str) -> float:
        """u of an exact agreement on ``value``: the field's, or the share of records holding
        it beyond one organisation's (``TF_GROUP``) when more do."""
        base = self.u[field_name][0]
        counts = self.value_counts.get(field_name)
        if not counts or not value:
            return base
        extra = counts.get(value, 0) - TF_GROUP
        if extra <= 0:
            return base
        return max(base, min(extra / max(self.present.get(field_name, 1), 1), 1 - 1e-6))

    def weights(self, levels: Sequence[int], a: Record, b: Record) -> list[float]:
        """Each field's bits for one pair, term-frequency adjusted."""
        out = []
        for index, field_name in enumerate(FIELDS):
            level = levels[index]
            if level == MISSING:
                out.append(0.0)
            elif level == 0 and field_name in self.value_counts:
                u = self.value_u(field_name, _value_of(a, field_name))
                out.append(math.log2(self.m[field_name][0] / u))
            else:
                out.append(self.level_weight(field_name, level))
        return out

    def probability(self, weight: float) -> float:
        if weight > 60:
            return 1.0
        if weight < -60:
            return 0.0
        return 1.0 / (1.0 + 2.0 ** (-weight))

    def table(self) -> list[dict[str, Any]]:
        """The learned parameters, field by field, for the people who read them."""
        rows = []
        for field_name in FIELDS:
            for level, label in enumerate(LEVELS[field_name]):
                rows.append(
                    {
                        "field": field_name,
                        "level": label,
                        "m": self.m[field_name][level],
                        "u": self.u[field_name][level],
                        "weight": round(self.level_weight(field_name, level), 2),
                    }
                )
        return rows


def _normalise(values: list[float]) -> list[float]:
    total = sum(values)
    return [max(value / total, MIN_PROBABILITY) for value in values]


def _pairs_sharing(values: Counter[str]) -> tuple[float, int]:
    """P(two records holding the field share a value), and how many records hold it."""
    holding = sum(values.values())
    if holding < 2:
        return 0.0, holding
    return sum(c * (c - 1) for c in values.values()) / (holding * (holding - 1)), holding


@dataclass
class Population:
    """What all pairs of records show, before telling matches from non-matches: the rate of
    each level among the pairs holding the field on both sides, and how many observations
    each rate rests on (every such pair for a rate from value frequencies, the sampled
    pairs for the others)."""

    rates: dict[str, list[float]]
    observations: dict[str, list[float]]
    exact: dict[str, list[bool]]  # the rate counts every pair (value frequencies)
    value_counts: dict[str, Counter[str]]
    present: dict[str, int]


def survey(records: Sequence[Record], weights: TokenWeights, *, seed: int = 16) -> Population:
    """Exact agreements' rates from value frequencies (precise even when rare), the other
    levels' from a seeded sample of random pairs (all pairs when there are few)."""
    n = len(records)
    counts: dict[str, Counter[str]] = {}
    present: dict[str, int] = {}
    exact: dict[str, tuple[float, int]] = {}
    for field_name in FIELDS:
        values = Counter(value for r in records if (value := _value_of(r, field_name)))
        exact[field_name] = _pairs_sharing(values)
        present[field_name] = sum(values.values())
        if field_name in TF_FIELDS:
            counts[field_name] = values
    # The same web domain without the same e-mail: domains shared less e-mails shared.
    domains = _pairs_sharing(Counter(r.domain for r in records if r.domain))
    total_pairs = n * (n - 1) // 2
    rng = random.Random(seed)
    if total_pairs <= U_SAMPLE:
        sample: Iterable[tuple[int, int]] = ((i, j) for i in range(n) for j in range(i + 1, n))
    else:
        sample = ((rng.randrange(n), rng.randrange(n)) for _ in range(U_SAMPLE))
    seen: list[list[float]] = [[0.0] * len(LEVELS[f]) for f in FIELDS]
    drawn = 0
    held = [0] * len(FIELDS)
    for i, j in sample:
        if i == j:
            continue
        drawn += 1
        for index, level in enumerate(compare(records[i], records[j], weights)):
            if level != MISSING:
                seen[index][level] += 1
                held[index] += 1
    rates: dict[str, list[float]] = {}
    observations: dict[str, list[float]] = {}
    exact_levels: dict[str, list[bool]] = {}
    for index, field_name in enumerate(FIELDS):
        observed = seen[index]
        sampled = sum(observed)
        estimate = [value / sampled if sampled else 0.0 for value in observed]
        weight = [sampled] * len(observed)
        counted = [False] * len(observed)
        share, holding = exact[field_name]
        if holding >= 2 and field_name != "country":
            # Pairs holding the field on both sides, estimated from the sample.
            pairs = total_pairs * (held[index] / drawn) if drawn else 0.0
            fixed = [share]
            if field_name == "domain" and domains[1] >= 2:
                fixed.append(max(domains[0] - share, 0.0))
            rest = sum(estimate[len(fixed) :]) or 1.0
            left = max(1 - sum(fixed), 0.0)
            estimate = fixed + [left * value / rest for value in estimate[len(fixed) :]]
            weight = [max(pairs, sampled)] * len(fixed) + weight[len(fixed) :]
            counted = [True] * len(fixed) + counted[len(fixed) :]
        rates[field_name] = estimate
        observations[field_name] = weight
        exact_levels[field_name] = counted
    return Population(
        rates=rates, observations=observations, exact=exact_levels, value_counts=counts,
        present=present,
    )  # fmt: skip


def u_from(
    population: Population, matched: dict[str, list[float]] | None = None
) -> dict[str, list[float]]:
    """u per field and level: what all pairs show, less what the matches account for where
    the rate is counted over every pair (``matched``: expected matching pairs per level),
    pulled towards ``PRIOR_U`` by pseudo-pairs; a level the sample never met counts as half
    an observation (the sample's resolution), not as impossible.

    Without the subtraction, a set where most pairs sharing an address are duplicates (a
    list merged from several source systems) would take a shared address for common among
    non-matches."""
    u: dict[str, list[float]] = {}
    for field_name in FIELDS:
        prior = PRIOR_U[field_name]
        rates = population.rates[field_name]
        seen = population.observations[field_name]
        found = (matched or {}).get(field_name) or [0.0] * len(prior)
        values = []
        for level in range(len(prior)):
            count = rates[level] * seen[level]
            total = seen[level]
            if population.exact[field_name][level]:
                count = max(count - found[level], 0.0)
                total = max(total - sum(found), 1.0)
            values.append((count + 0.5 + U_PSEUDO * prior[level]) / (total + 1.0 + U_PSEUDO))
        u[field_name] = _normalise(values)
    return u


def _posterior(odds: float, pattern: Sequence[int], m: Any, u: Any, skip: set[int]) -> float:
    ratio = odds
    for index, level in enumerate(pattern):
        if level != MISSING and index not in skip:
            name = FIELDS[index]
            ratio *= m[name][level] / u[name][level]
    return ratio / (1 + ratio) if ratio < 1e300 else 1.0


def _session(
    patterns: list[tuple[tuple[int, ...], int]],
    u: dict[str, list[float]],
    fixed: set[int],
) -> tuple[dict[str, list[float]], dict[str, float], int, bool]:
    """EM over one session's patterns: m of the fields not fixed, and the session's share
    of matches. The session's own non-matches are not random pairs (pairs sharing a phone
    that are not one site are mostly one organisation's other sites, sharing words of its
    name), so u is learned inside the session too, starting from and pulled towards the
    population's; only m leaves the session. Returns m, the expected matches holding each
    field, iterations, whether it converged."""
    m = {name: list(PRIOR_M[name]) for name in FIELDS}
    u_session = {name: list(values) for name, values in u.items()}
    total = sum(count for _, count in patterns)
    share = 0.5
    converged = False
    iteration = 0
    support: dict[str, float] = {}
    for iteration in range(1, EM_MAX_ITERATIONS + 1):  # noqa: B007
        odds = share / (1 - share)
        m_sums = [[0.0] * len(LEVELS[f]) for f in FIELDS]
        u_sums = [[0.0] * len(LEVELS[f]) for f in FIELDS]
        expected = 0.0
        for pattern, count in patterns:
            posterior = _posterior(odds, pattern, m, u_session, fixed)
            weight = posterior * count
            rest = count - weight
            expected += weight
            for index, level in enumerate(pattern):
                if level != MISSING:
                    m_sums[index][level] += weight
                    u_sums[index][level] += rest
        change = 0.0
        for index, name in enumerate(FIELDS):
            if index in fixed:
                continue
            seen = m_sums[index]
            held = sum(seen)
            support[name] = held
            new = _normalise(
                [
                    (seen[level] + M_PSEUDO * PRIOR_M[name][level]) / (held + M_PSEUDO)
                    for level in range(len(seen))
                ]
            )
            change = max(change, *(abs(x - y) for x, y in zip(new, m[name], strict=True)))
            m[name] = new
            seen = u_sums[index]
            held = sum(seen)
            u_session[name] = _normalise(
                [
                    (seen[level] + U_SESSION_PSEUDO * u[name][level]) / (held + U_SESSION_PSEUDO)
                    for level in range(len(seen))
                ]
            )
        new_share = min(max(expected / max(total, 1), 1e-6), 1 - 1e-6)
        change = max(change, abs(new_share - share))
        share = new_share
        if change < EM_TOLERANCE:
            converged = True
            break
    return m, support, iteration, converged


def fit(
    patterns: Counter[tuple[int, ...]],
    *,
    records: int,
    population: Population,
    rounds: int = 3,
) -> MatchModel:
    """m by EM sessions over the blocked pairs' distinct comparison patterns (u held), the
    prior (the share of all pairs that are matches) by EM with m and u held, then u again
    without the matches found; ``rounds`` times."""
    items = list(patterns.items())
    u = u_from(population)
    iterations = 0
    converged = True
    m: dict[str, list[float]] = {}
    prior = 0.0
    for _ in range(rounds):
        m, used, done = _learn_m(items, u)
        prior, used_prior, done_prior = _learn_prior(items, m, u, records=records)
        iterations += used + used_prior
        converged = done and done_prior
        u = u_from(population, _matched_levels(items, m, u, prior))
    return MatchModel(
        m=m, u=u, prior=prior, iterations=iterations, converged=converged,
        pairs=sum(patterns.values()), value_counts=population.value_counts,
        present=population.present,
    )  # fmt: skip


def _learn_m(
    items: list[tuple[tuple[int, ...], int]], u: dict[str, list[float]]
) -> tuple[dict[str, list[float]], int, bool]:
    iterations = 0
    converged = True

    def run(field_name: str) -> dict[str, tuple[list[float], float]]:
        nonlocal iterations, converged
        index = FIELDS.index(field_name)
        agree = (0, 1) if field_name == "name" else (0,)
        chosen = [(pattern, count) for pattern, count in items if pattern[index] in agree]
        if not chosen:
            return {}
        m_session, support, used, done = _session(chosen, u, {index})
        iterations += used
        converged = converged and done
        return {name: (m_session[name], held) for name, held in support.items()}

    primary = [run(name) for name in PRIMARY_SESSIONS]
    fallback: dict[str, tuple[list[float], float]] | None = None
    m: dict[str, list[float]] = {}
    for name in FIELDS:
        found = [session[name] for session in primary if session.get(name, ([], 0.0))[1] > 0]
        if sum(held for _, held in found) < MIN_SUPPORT:
            if fallback is None:
                fallback = run(FALLBACK_SESSION)
            if fallback.get(name, ([], 0.0))[1] > 0:
                found.append(fallback[name])
        if not found:
            m[name] = list(PRIOR_M[name])
            continue
        # Sessions weigh by the matches they saw holding the field.
        total = sum(held for _, held in found)
        m[name] = _normalise(
            [sum(values[level] * held for values, held in found) / total
             for level in range(len(LEVELS[name]))]
        )  # fmt: skip
    return m, iterations, converged


def _learn_prior(
    items: list[tuple[tuple[int, ...], int]],
    m: dict[str, list[float]],
    u: dict[str, list[float]],
    *,
    records: int,
) -> tuple[float, int, bool]:
    """The share of all pairs that are matches; pairs blocking did not keep count as
    non-matches. ``PRIOR_SHARE`` counts for ``PRIOR_PSEUDO`` pairs: a handful of accounts
    that all share a tax id do not make every pair of accounts a likely match."""
    all_pairs = max(records * (records - 1) / 2, 1.0)
    prior = min(max(1.0 / max(records, 2), 1e-12), 0.5)
    for step in range(1, EM_MAX_ITERATIONS + 1):
        odds = prior / (1 - prior)
        expected = sum(_posterior(odds, pattern, m, u, set()) * count for pattern, count in items)
        new_prior = min(
            max((expected + PRIOR_PSEUDO * PRIOR_SHARE) / (all_pairs + PRIOR_PSEUDO), 1e-12), 0.5
        )
        moved = abs(math.log(new_prior) - math.log(prior))
        prior = new_prior
        if moved < 1e-6:
            return prior, step, True
    return prior, EM_MAX_ITERATIONS, False


def _matched_levels(
    items: list[tuple[tuple[int, ...], int]],
    m: dict[str, list[float]],
    u: dict[str, list[float]],
    prior: float,
) -> dict[str, list[float]]:
    """Expected matching pairs at each level of each field."""
    odds = prior / (1 - prior)
    out = {name: [0.0] * len(LEVELS[name]) for name in FIELDS}
    for pattern, count in items:
        weight = _posterior(odds, pattern, m, u, set()) * count
        for index, level in enumerate(pattern):
            if level != MISSING:
                out[FIELDS[index]][level] += weight
    return out
