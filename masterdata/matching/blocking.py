"""Which pairs are compared at all.

Comparing every record with every other is quadratic (5·10⁹ pairs for 100k records), so
several passes each join records that share a key, and the union of their pairs is
compared once:

- strong identifiers: tax id, web domain, phone, e-mail;
- the building: house number + street name (without type or direction), with the postcode
  or with the city;
- the whole name in any word order, and each of its organisation parts (a site inside its
  parent's "Parent - Site" name);
- rare name words: the rarest word of the name (when rare), its two rarest words together;
- postcode + the first letters of the name;
- a sorted neighbourhood: names in alphabetical order, each compared (in C, by rapidfuzz)
  with the next few, which catches a typo in a rare word.

An identifier or rare-word block of a handful of records gives all its pairs; a larger one
(a shared switchboard number, a parent's domain) and the other name blocks give only the
pairs whose names agree enough (rapidfuzz, in C). The building and whole-name passes give
all their pairs: their point is names that differ, or one inside the other. A block larger
than ``MAX_BLOCK`` is dropped: its key is too common to mean anything, and the other passes
still join its true pairs.

``pairs_completeness`` says how many known true pairs survive, beside the reduction ratio.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from masterdata.matching.compare import TokenWeights
from masterdata.matching.normalize import Record

MAX_BLOCK = 400  # blocks larger than this are dropped
RARE_WORD = 40  # a word in at most this many names is rare enough to block on alone
WINDOW = 6  # neighbours compared in the sorted-name pass
NEIGHBOUR_CUTOFF = 80.0


@dataclass
class Blocking:
    pairs: set[int]  # i * n + j, i < j, indices into the records
    size: int  # number of records
    by_pass: dict[str, int] = field(default_factory=dict)  # pairs each pass produced
    seconds: dict[str, float] = field(default_factory=dict)  # time each pass took
    comparisons: int = 0  # name comparisons made in C while blocking

    def index_pairs(self) -> Iterable[tuple[int, int]]:
        n = self.size
        for code in self.pairs:
            yield divmod(code, n)

    @property
    def reduction_ratio(self) -> float:
        total = self.size * (self.size - 1) // 2
        return 1.0 - len(self.pairs) / total if total else 1.0


def _rarest(record: Record, weights: TokenWeights) -> list[str]:
    return sorted(set(record.name.tokens), key=lambda t: (weights.frequency.get(t, 0), t))


def _rare_word(record: Record, weights: TokenWeights) -> list[str]:
    """The name's rarest word, when it is rare."""
    tokens = _rarest(record, weights)
    if tokens and weights.frequency.get(tokens[0], 0) <= RARE_WORD:
        return [tokens[0]]
    return []


def _rare_pair(record: Record, weights: TokenWeights) -> list[str]:
    """The name's two rarest words together."""
    tokens = _rarest(record, weights)
    return [f"{tokens[0]} {tokens[1]}"] if len(tokens) >= 2 else []


def _whole_names(record: Record, weights: TokenWeights) -> list[str]:
    """The name's words in any order, and each organisation part's: a site named inside its
    parent's "Parent - Site" name meets the site's own record here."""
    name = record.name
    if not name.tokens:
        return []
    keys = [" ".join(sorted(set(name.tokens)))]
    keys.extend(" ".join(sorted(set(part.split()))) for part in name.parts)
    return keys


def _buildings(record: Record, weights: TokenWeights) -> list[str]:
    """House number + street name with the postcode, and with the city (or, for a record
    without a city, with the country): either may be missing on one side."""
    building = record.address.building_key
    if not building:
        return []
    keys = []
    if record.postcode:
        keys.append(f"{building} {record.postcode}")
    keys.append(f"{building} {record.country} {record.city or '-'}")
    return keys


# pass name → (keys of a record, blocks up to this size give every pair, larger ones only
# the pairs whose names agree enough: scorer and cut-off; fuzz.ratio compares the names'
# words in alphabetical order, i.e. a token-sort ratio)
PASSES: dict[str, tuple[Callable[[Record, TokenWeights], Iterable[str]], int, Any, float]] = {
    "tax_id": (lambda r, w: (r.tax_id,) if r.tax_id else (), 8, fuzz.token_set_ratio, 55.0),
    "domain": (lambda r, w: (r.domain,) if r.domain else (), 8, fuzz.token_set_ratio, 55.0),
    "phone": (lambda r, w: (r.phone,) if r.phone else (), 8, fuzz.token_set_ratio, 55.0),
    "email": (lambda r, w: (r.email,) if r.email else (), 8, fuzz.token_set_ratio, 55.0),
    "building": (_buildings, MAX_BLOCK, None, 0.0),
    "whole_name": (_whole_names, MAX_BLOCK, None, 0.0),
    "rare_word": (_rare_word, 5, fuzz.ratio, 85.0),
    "rare_pair": (_rare_pair, 0, fuzz.ratio, 85.0),
    "postcode_name": (
        lambda r, w: (f"{r.postcode} {r.name.key[:3]}",) if r.postcode and r.name.key else (),
        0, fuzz.ratio, 60.0,
    ),
}  # fmt: skip


def block(records: Sequence[Record], weights: TokenWeights) -> Blocking:
    n = len(records)
    out = Blocking(pairs=set(), size=n)
    names = [record.name.key for record in records]
    # Words in alphabetical order: rapidfuzz's plain ratio on these is its token-sort ratio
    # without sorting again for every comparison.
    sorted_names = [" ".join(sorted(record.name.tokens)) for record in records]
    for pass_name, (keys_of, small, scorer, cutoff) in PASSES.items():
        started = time.perf_counter()
        blocks: dict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            for key in keys_of(record, weights):
                blocks[key].append(index)
        before = len(out.pairs)
        for members in blocks.values():
            size = len(members)
            if size < 2 or size > MAX_BLOCK:
                continue
            if size <= small:
                for x in range(size):
                    i = members[x]
                    for y in range(x + 1, size):
                        j = members[y]
                        out.pairs.add(i * n + j if i < j else j * n + i)
                continue
            source = sorted_names if scorer is fuzz.ratio else names
            block_names = [source[i] for i in members]
            for x in range(size - 1):
                i = members[x]
                following = block_names[x + 1 :]
                out.comparisons += len(following)
                for _, _, y in process.extract(
                    block_names[x], following, scorer=scorer, score_cutoff=cutoff, limit=None
                ):
                    j = members[x + 1 + y]
                    out.pairs.add(i * n + j if i < j else j * n + i)
        out.by_pass[pass_name] = len(out.pairs) - before
        out.seconds[pass_name] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    before = len(out.pairs)
    order = sorted(range(n), key=lambda index: (records[index].country, names[index]))
    for position in range(n - 1):
        i = order[position]
        if not names[i]:
            continue
        neighbours = order[position + 1 : position + 1 + WINDOW]
        out.comparisons += len(neighbours)
        for _, _, at in process.extract(
            names[i], [names[other] for other in neighbours], scorer=fuzz.ratio,
            score_cutoff=NEIGHBOUR_CUTOFF, limit=None,
        ):  # fmt: skip
            other = neighbours[at]
            out.pairs.add(i * n + other if i < other else other * n + i)
    out.by_pass["sorted_names"] = len(out.pairs) - before
    out.seconds["sorted_names"] = round(time.perf_counter() - started, 2)
    return out


def pairs_completeness(blocking: Blocking, true_pairs: Iterable[tuple[int, int]]) -> float:
    """The share of known true pairs (index pairs) that blocking keeps."""
    n = blocking.size
    total = kept = 0
    for i, j in true_pairs:
        total += 1
        code = i * n + j if i < j else j * n + i
        kept += code in blocking.pairs
    return kept / total if total else 1.0
