"""Each field of a pair graded to a comparison level.

Levels run from the strongest agreement to disagreement; ``MISSING`` (-1) means either side
has no value and says nothing either way (missing is not a mismatch). How much a level
weighs is not set here: ``masterdata.matching.model`` learns it from the records.

Names are compared by their words weighted by rarity among the records (an inverse
document frequency: "riverdale" says more than "center"), with typos, abbreviations and
words cut short tolerated word by word, so:

- ``close``: the same words both ways up to typos, order, abbreviations or a truncation;
- ``contained``: one name is inside the other, the organisation-aware case: a site named
  inside its parent's "Parent - Site" name, or a parent named without its site;
- ``partial``: they share much of their rare words;
- ``different``: they don't.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

from rapidfuzz.distance import OSA
from rapidfuzz.fuzz import ratio
from rapidfuzz.process import extractOne

from masterdata.matching.normalize import Address, NameParts, Record

MISSING = -1
# Fields that move together are compared together, or their agreement would be counted
# twice: the street address with its postcode (one location), the e-mail with the web
# domain (its domain is the domain when the record has none).
LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("same", "close", "contained", "partial", "different"),
    "tax_id": ("same", "different"),
    "phone": ("same", "close", "different"),
    "address": ("same", "close", "street", "postcode", "different"),
    "domain": ("email", "same", "different"),
    "country": ("same", "different"),
}
FIELDS = tuple(LEVELS)
NAME, TAX_ID, PHONE, ADDRESS, DOMAIN, COUNTRY = range(len(FIELDS))
# Name similarity (rarity-weighted) from which names are "close", "contained", "partial".
CLOSE_COVER = 0.9
CONTAINED_COVER = 0.95
CONTAINED_SIMILARITY = 0.4
PARTIAL_SIMILARITY = 0.5
CLOSE_RATIO = 94.0  # names this alike letter by letter (rapidfuzz's ratio) are close


# Names with no word in common and less alike than this (rapidfuzz's ratio, in C) are
# different without weighing their words one by one.
NAME_GATE = 60.0


class TokenWeights:
    """How rare each name word is among the records: ``log(N / document frequency)``."""

    def __init__(self, names: Iterable[NameParts]) -> None:
        counts: Counter[str] = Counter()
        total = 0
        for name in names:
            total += 1
            counts.update(set(name.tokens))
        self.records = max(total, 1)
        self.frequency = counts
        self.unseen = math.log(self.records + 1)
        self.weight = {
            token: math.log((self.records + 1) / count) for token, count in counts.items()
        }
        self._totals: dict[str, tuple[frozenset[str], float]] = {}

    def of(self, token: str) -> float:
        return self.weight.get(token, self.unseen)

    def vector(self, name: NameParts) -> tuple[frozenset[str], float]:
        """The name's words and their summed weight, computed once per name."""
        found = self._totals.get(name.key)
        if found is None:
            tokens = frozenset(name.tokens)
            found = (tokens, sum(self.weight.get(token, self.unseen) for token in tokens))
            self._totals[name.key] = found
        return found


def _typo_limit(left: str, right: str) -> int:
    return 1 if min(len(left), len(right)) < 7 else 2


def _tokens_agree(left: str, right: str, *, last: bool) -> bool:
    """A typo ('learining' / 'learning'), or a word cut at a field's length ('lear')."""
    if len(left) >= 4 and len(right) >= 4:
        limit = _typo_limit(left, right)
        if OSA.distance(left, right, score_cutoff=limit) <= limit:
            return True
    if last and min(len(left), len(right)) >= 3:
        return left.startswith(right) or right.startswith(left)
    return False


def name_similarity(
    a: NameParts, b: NameParts, weights: TokenWeights, *, gate: bool = True
) -> tuple[int, float]:
    """The name level and a rarity-weighted similarity (0..1) for the evidence."""
    if not a.tokens or not b.tokens:
        return MISSING, 0.0
    if a.key == b.key:
        return 0, 1.0
    set_a, total_a = weights.vector(a)
    set_b, total_b = weights.vector(b)
    common = set_a & set_b
    if gate:
        alike = ratio(a.key, b.key)
        if alike >= CLOSE_RATIO:
            return 1, alike / 100
        if not common and alike < NAME_GATE:
            return 4, 0.0
    weight = weights.weight
    unseen = weights.unseen
    matched_a = sum(weight.get(token, unseen) for token in common)
    matched_b = matched_a
    if len(common) < len(set_a) and len(common) < len(set_b):
        rest_b = [token for token in b.tokens if token not in common]
        last_a, last_b = a.tokens[-1], b.tokens[-1]
        for token in a.tokens:
            if token in common or not rest_b:
                continue
            if len(token) >= 4:
                limit = 1 if len(token) < 7 else 2
                found = extractOne(token, rest_b, scorer=OSA.distance, score_cutoff=limit)
                if found is not None and len(found[0]) >= 4:
                    other = found[0]
                    matched_a += weight.get(token, unseen)
                    matched_b += weight.get(other, unseen)
                    rest_b.remove(other)
                    continue
            if token == last_a or last_b in rest_b:
                for other in rest_b:
                    if (token == last_a or other == last_b) and _tokens_agree(
                        token, other, last=True
                    ):
                        matched_a += weight.get(token, unseen)
                        matched_b += weight.get(other, unseen)
                        rest_b.remove(other)
                        break
    cover_a = matched_a / total_a if total_a else 0.0
    cover_b = matched_b / total_b if total_b else 0.0
    similarity = (matched_a + matched_b) / (total_a + total_b) if total_a + total_b else 0.0
    if min(cover_a, cover_b) >= CLOSE_COVER or ratio(a.key, b.key) >= CLOSE_RATIO:
        return 1, similarity
    if (max(cover_a, cover_b) >= CONTAINED_COVER and similarity >= CONTAINED_SIMILARITY) or (
        (a.parts and b.key in a.parts) or (b.parts and a.key in b.parts)
    ):
        return 2, similarity
    if similarity >= PARTIAL_SIMILARITY:
        return 3, similarity
    return 4, similarity


def _streets_agree(a: str, b: str) -> bool:
    if a == b:
        return True
    if min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)):
        return True  # cut at a field's length
    return len(a) >= 4 and len(b) >= 4 and ratio(a, b) >= 85


def address_level(a: Address, b: Address) -> int:
    """same: one building (house numbers overlap, ranges included; one street); close: the
    same building with a conflicting street type or unit, or a typo in the street or the
    number; street: the same street, another number or the other side of town (N against
    S); different."""
    if not a.text or not b.text:
        return MISSING
    if a.number_low < 0 or b.number_low < 0 or not a.street or not b.street:
        if a.text == b.text:
            return 0
        return 1 if ratio(a.text, b.text) >= 90 else 3
    streets = _streets_agree(a.street, b.street)
    if not streets:
        return 3
    if a.number_low > b.number_high or b.number_low > a.number_high:
        # One digit mistyped or two swapped (42 / 24, 1812 / 1821) is a typo more often
        # than the building next door.
        left, right = str(a.number_low), str(b.number_low)
        if len(left) == len(right) and OSA.distance(left, right, score_cutoff=1) <= 1:
            return 1
        return 2
    if a.direction and b.direction and a.direction != b.direction:
        return 2  # 5124 E Damen and 5124 W Damen are two places on one street
    conflict = (a.street_type and b.street_type and a.street_type != b.street_type) or (
        a.unit and b.unit and a.unit != b.unit
    )
    return 1 if conflict or a.street != b.street else 0


def postcode_level(a: str, b: str) -> int:
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    return 1 if len(a) >= 4 and len(b) >= 4 and a[:3] == b[:3] else 2


def phone_level(a: str, b: str) -> int:
    """close: the same local number under another area code, or one digit mistyped."""
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    if a[-7:] == b[-7:]:
        return 1
    if len(a) == len(b) and OSA.distance(a, b, score_cutoff=1) <= 1:
        return 1  # one digit mistyped, or two neighbours swapped
    return 2


def _exact(a: str, b: str) -> int:
    if not a or not b:
        return MISSING
    return 0 if a == b else 1


def location_level(a: Record, b: Record) -> int:
    """The street address and the postcode as one location: same (one building and one
    postcode), close (one building otherwise: a postcode missing or differing, a detail
    differing), street (the same street, another number), postcode (no building in common,
    or an address missing, but the same postcode), different."""
    building = address_level(a.address, b.address)
    postcode = postcode_level(a.postcode, b.postcode)
    if building == 0 and postcode == 0:
        return 0
    if building in (0, 1):
        return 1
    if building == 2:
        return 2
    if postcode == 0:
        return 3
    if building == 3 or postcode in (1, 2):
        return 4
    return MISSING


def domain_level(a: Record, b: Record) -> int:
    """email (the same address), same (the same web domain), different."""
    if a.email and a.email == b.email:
        return 0
    if a.domain and b.domain:
        return 1 if a.domain == b.domain else 2
    if a.email and b.email:
        return 2
    return MISSING


def compare(a: Record, b: Record, weights: TokenWeights) -> tuple[int, ...]:
    """The level of every field (in ``FIELDS`` order) for one pair."""
    return (
        name_similarity(a.name, b.name, weights)[0],
        _exact(a.tax_id, b.tax_id),
        phone_level(a.phone, b.phone),
        location_level(a, b),
        domain_level(a, b),
        _exact(a.country, b.country),
    )


def level_name(field: str, level: int) -> str:
    return "missing" if level == MISSING else LEVELS[field][level]


def describe(a: Record, b: Record, weights: TokenWeights) -> Mapping[str, float]:
    """Similarities behind the levels, for the evidence the steward reads."""
    out: dict[str, float] = {}
    if a.name.tokens and b.name.tokens:
        out["name"] = round(name_similarity(a.name, b.name, weights, gate=False)[1], 3)
    return out
