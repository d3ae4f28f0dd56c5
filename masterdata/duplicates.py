"""Duplicate-account detection: blocking, then fuzzy comparison field by field.

Comparing every account with every other is quadratic (5·10⁹ pairs for 100k accounts), so
accounts are first put into blocks that a true duplicate almost always shares with its twin:
the same tax id, domain, phone or e-mail (exact keys), or the same country plus the first
letters of the normalized name, of its words sorted, of its longest word, or the same
postcode. Inside a name or postcode block, rapidfuzz compares names in C and keeps only the
pairs above a loose cut-off; every pair that survives blocking is then scored on every field
(name, tax id, domain, address, postcode, phone, e-mail) with per-field evidence.

The score is a Fellegi-Sunter style sum of log-odds (agreement adds, disagreement subtracts,
a missing value says nothing), squashed to 0..1. A different tax id weighs heavily against a
match: that is what tells two subsidiaries sharing a domain apart. Free-mail domains never
count (masterdata.identity.domain_key). ``TANDEM_DUPLICATE_THRESHOLD`` was chosen on the
labelled set of masterdata.synthetic (see README, "Duplicate detection").
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

# Fields compared, in the order the evidence lists them.
COMPARED_FIELDS = ("name", "tax_id", "domain", "address", "postcode", "phone", "email")
# An exact-key block larger than this is a shared value (a switchboard number, a parent's
# domain), not evidence: its pairs are left to the name blocks.
MAX_EXACT_BLOCK = 50
WINDOW = 20  # neighbours each account is compared with, per sort order
# Names less alike than this cannot reach a threshold of 0.6 or more without a shared
# identifier (which puts the pair in an exact block anyway): -3 prior + 16·(0.74 - 0.75)
# + 3.5 for address and postcode < logit(0.6).
NAME_CUTOFF = 74.0
PRIOR_LOG_ODDS = -3.0

_STREET_WORDS = {
    "street": "st", "str": "st", "strasse": "st", "road": "rd", "avenue": "ave", "av": "ave",
    "boulevard": "blvd", "drive": "dr", "lane": "ln", "place": "pl", "square": "sq",
    "suite": "ste", "floor": "fl", "building": "bldg",
}  # fmt: skip


@dataclass(frozen=True)
class AccountRow:
    """What detection needs of an account, already normalized."""

    pk: int
    country: str
    name_key: str
    sorted_name: str  # the name's words in alphabetical order (word order does not matter)
    tax_id_key: str
    domain_key: str
    address_key: str
    postcode_key: str
    phone_key: str
    email_key: str

    def fingerprint_part(self) -> str:
        return "|".join(
            (
                self.name_key, self.tax_id_key, self.domain_key, self.address_key,
                self.postcode_key, self.phone_key, self.email_key, self.country,
            )
        )  # fmt: skip


@dataclass(frozen=True)
class PairScore:
    a: int
    b: int
    score: float
    evidence: dict[str, Any]


@dataclass
class DetectionResult:
    pairs: list[PairScore]
    accounts: int
    blocked_comparisons: int  # name comparisons made inside blocks (in C)
    pairs_scored: int  # distinct pairs scored on every field
    timings: dict[str, float] = field(default_factory=dict)


# --- Normalizers -----------------------------------------------------------------------------


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text or "")
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def address_key(line1: str, line2: str = "") -> str:
    """'12, Baker Street' and '12 baker st.' are one address."""
    words = re.sub(r"[^a-z0-9]+", " ", _fold(f"{line1} {line2}")).split()
    return " ".join(_STREET_WORDS.get(word, word) for word in words)


def postcode_key(postcode: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", postcode or "").upper()


def phone_key(phone: str) -> str:
    """The last nine digits: '+44 20 7946 0018' and '020 7946 0018' agree."""
    digits = re.sub(r"\D", "", phone or "")
    return digits[-9:] if len(digits) >= 7 else ""


def email_key(email: str) -> str:
    return (email or "").strip().lower()


def account_row(
    *,
    pk: int,
    country: str,
    name_key: str,
    tax_id_key: str,
    domain_key: str,
    address_line1: str,
    address_line2: str,
    postcode: str,
    phone: str,
    email: str,
) -> AccountRow:
    return AccountRow(
        pk=pk,
        country=(country or "").upper(),
        name_key=name_key,
        sorted_name=" ".join(sorted(name_key.split())),
        tax_id_key=tax_id_key,
        domain_key=domain_key,
        address_key=address_key(address_line1, address_line2),
        postcode_key=postcode_key(postcode),
        phone_key=phone_key(phone),
        email_key=email_key(email),
    )


def pair_fingerprint(a: AccountRow, b: AccountRow) -> str:
    """Changes when any compared field of either account changes."""
    first, second = (a, b) if a.pk < b.pk else (b, a)
    raw = f"{first.pk}#{first.fingerprint_part()}#{second.pk}#{second.fingerprint_part()}"
    return hashlib.sha256(raw.encode()).hexdigest()


# --- Blocking --------------------------------------------------------------------------------


def _exact_blocks(rows: Sequence[AccountRow]) -> list[list[int]]:
    blocks: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        for kind, value in (
            ("t", row.tax_id_key), ("d", row.domain_key), ("p", row.phone_key),
            ("e", row.email_key), ("z", f"{row.country}:{row.postcode_key}:{row.address_key}"),
        ):  # fmt: skip
            if value and not value.endswith(":"):
                blocks[(kind, value)].append(index)
    return [members for members in blocks.values() if 1 < len(members) <= MAX_EXACT_BLOCK]


def _sort_keys(row: AccountRow) -> tuple[str, str, str]:
    """Three orders in which twins sit close: by name, by its sorted words (word order),
    by the name read backwards (a typo in the first letters)."""
    return (
        f"{row.country} {row.name_key}",
        f"{row.country} {row.sorted_name}",
        f"{row.country} {row.name_key[::-1]}",
    )


def candidate_pairs(
    rows: Sequence[AccountRow], *, window: int = WINDOW, name_cutoff: float = NAME_CUTOFF
) -> tuple[set[tuple[int, int]], int]:
    """Index pairs worth scoring, and how many comparisons blocking made.

    Exact blocks (same tax id, domain, phone, e-mail or postcode + address) give all their
    pairs. Then a sorted neighbourhood: for each of three sort orders, every account is
    compared (rapidfuzz, in C) with the ``window`` accounts after it, and pairs whose names
    reach ``name_cutoff`` are kept: linear in the number of accounts.
    """
    pairs: set[tuple[int, int]] = set()
    compared = 0
    for members in _exact_blocks(rows):
        for i, first in enumerate(members):
            for second in members[i + 1 :]:
                pairs.add((first, second) if first < second else (second, first))
                compared += 1
    keyed = [_sort_keys(row) for row in rows]
    names = [row.sorted_name for row in rows]
    for which in range(3):
        order = sorted(range(len(rows)), key=lambda index: keyed[index][which])
        for position, index in enumerate(order[:-1]):
            following = order[position + 1 : position + 1 + window]
            compared += len(following)
            for _, _, j in process.extract(
                names[index], [names[other] for other in following], scorer=fuzz.ratio,
                score_cutoff=name_cutoff, limit=None,
            ):  # fmt: skip
                other = following[j]
                pairs.add((index, other) if index < other else (other, index))
    return pairs, compared


# --- Scoring ---------------------------------------------------------------------------------


def _initials(name_key: str) -> str:
    return "".join(word[0] for word in name_key.split() if word)


def name_similarity(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    best = max(fuzz.token_sort_ratio(a, b), fuzz.ratio(a, b)) / 100.0
    if best >= 0.9:
        return best
    # "ibm" against "international business machines": an acronym of the other name.
    short, long_ = sorted((a, b), key=len)
    if " " not in short and len(short) >= 2 and short == _initials(long_):
        best = max(best, 0.9)
    return best


_EXACT_WEIGHTS = (
    ("tax_id", "tax_id_key", 6.0, -5.0),
    ("domain", "domain_key", 3.0, -1.5),
    ("postcode", "postcode_key", 1.5, -0.5),
    ("phone", "phone_key", 3.0, -0.5),
    ("email", "email_key", 2.5, -0.3),
)
ADDRESS_MAX_WEIGHT = 2.0


def _quick_log_odds(a: AccountRow, b: AccountRow) -> float:
    """An upper bound of the pair's log-odds from cheap comparisons (the address counted
    as identical), so most pairs are rejected without building any evidence."""
    log_odds = PRIOR_LOG_ODDS + ADDRESS_MAX_WEIGHT
    for _, attr, agree, disagree in _EXACT_WEIGHTS:
        left, right = getattr(a, attr), getattr(b, attr)
        if left and right:
            log_odds += agree if left == right else disagree
    if a.country != b.country:
        log_odds -= 2.0
    return log_odds + (name_similarity(a.name_key, b.name_key) - 0.75) * 16


def logit(probability: float) -> float:
    probability = min(max(probability, 1e-9), 1 - 1e-9)
    return math.log(probability / (1 - probability))


def pair_score(a: AccountRow, b: AccountRow) -> PairScore:
    """Score one pair on every field; the evidence says what each field contributed."""
    evidence: dict[str, Any] = {}
    log_odds = PRIOR_LOG_ODDS

    name_sim = name_similarity(a.name_key, b.name_key)
    weight = (name_sim - 0.75) * 16
    log_odds += weight
    evidence["name"] = {
        "result": _graded(name_sim),
        "similarity": round(name_sim, 3),
        "weight": round(weight, 2),
    }

    for name, attr, agree, disagree in _EXACT_WEIGHTS:
        left, right = getattr(a, attr), getattr(b, attr)
        if not left or not right:
            evidence[name] = {"result": "missing", "weight": 0.0}
            continue
        same = left == right
        weight = agree if same else disagree
        log_odds += weight
        evidence[name] = {"result": "same" if same else "different", "weight": weight}

    if a.address_key and b.address_key:
        address_sim = fuzz.token_sort_ratio(a.address_key, b.address_key) / 100.0
        weight = (address_sim - 0.6) * 5
        log_odds += weight
        evidence["address"] = {
            "result": _graded(address_sim),
            "similarity": round(address_sim, 3),
            "weight": round(weight, 2),
        }
    else:
        evidence["address"] = {"result": "missing", "weight": 0.0}

    if a.country != b.country:
        log_odds -= 2.0
        evidence["country"] = {"result": "different", "weight": -2.0}
    score = 1.0 / (1.0 + math.exp(-log_odds))
    first, second = (a.pk, b.pk) if a.pk < b.pk else (b.pk, a.pk)
    ordered = {key: evidence[key] for key in (*COMPARED_FIELDS, "country") if key in evidence}
    return PairScore(first, second, round(score, 3), ordered)


def _graded(similarity: float) -> str:
    if similarity >= 0.999:
        return "same"
    if similarity >= 0.85:
        return "close"
    if similarity >= 0.6:
        return "partial"
    return "different"


def duplicates_find(rows: Sequence[AccountRow], *, threshold: float) -> DetectionResult:
    """Every pair among ``rows`` scoring at least ``threshold``, best first."""
    import time

    started = time.perf_counter()
    index_pairs, compared = candidate_pairs(rows)
    blocked = time.perf_counter()
    found = []
    floor = logit(threshold)
    for i, j in index_pairs:
        if _quick_log_odds(rows[i], rows[j]) < floor:
            continue
        scored = pair_score(rows[i], rows[j])
        if scored.score >= threshold:
            found.append(scored)
    found.sort(key=lambda pair: (-pair.score, pair.a, pair.b))
    done = time.perf_counter()
    return DetectionResult(
        pairs=found,
        accounts=len(rows),
        blocked_comparisons=compared,
        pairs_scored=len(index_pairs),
        timings={"blocking": blocked - started, "scoring": done - blocked},
    )


@dataclass(frozen=True)
class Quality:
    precision: float
    recall: float
    true_pairs: int
    found: int
    seconds: float


def synthetic_rows(accounts: Sequence[Any]) -> list[AccountRow]:
    """Rows for ``masterdata.synthetic`` accounts, normalized the way stored accounts are."""
    from masterdata.identity import account_keys

    return [
        account_row(
            pk=index,
            country=account.country,
            address_line1=account.address_line1,
            address_line2="",
            postcode=account.postcode,
            phone=account.phone,
            email=account.email,
            **account_keys(
                legal_name=account.legal_name,
                country=account.country,
                tax_id=account.tax_id,
                domain=account.domain,
                email=account.email,
            ),
        )
        for index, account in enumerate(accounts, start=1)
    ]


def evaluate(labelled: Any, *, threshold: float) -> Quality:
    """Precision and recall of detection on a ``masterdata.synthetic.LabelledSet``."""
    import time

    rows = synthetic_rows(labelled.accounts)
    keys = {index: account.key for index, account in enumerate(labelled.accounts, start=1)}
    started = time.perf_counter()
    result = duplicates_find(rows, threshold=threshold)
    seconds = time.perf_counter() - started
    found = {frozenset((keys[pair.a], keys[pair.b])) for pair in result.pairs}
    hits = len(found & labelled.duplicate_pairs)
    return Quality(
        precision=round(hits / len(found), 4) if found else 1.0,
        recall=round(hits / len(labelled.duplicate_pairs), 4) if labelled.duplicate_pairs else 1.0,
        true_pairs=len(labelled.duplicate_pairs),
        found=len(found),
        seconds=round(seconds, 2),
    )
