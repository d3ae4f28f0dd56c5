"""A record's fields as comparable parts.

Organisation names are split into their parts ("Northside Youth Centers - Riverdale
Campus" is the parent "northside youth centers" and the site "riverdale campus"), folded for
case, accents and punctuation, with abbreviations spelt out ("ctr" is "center") and legal
forms dropped. Street addresses are parsed into house number (a range "2210-16" is
2210..2216), direction, street name, street type and unit, so "4410 N Clark St." and
"4410 N CLARK" are one address and "2210 W Ogden" lies inside "2210-16 West Ogden Avenue".
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from masterdata.identity import ABBREVIATIONS, LEGAL_SUFFIXES, domain_key, name_key, tax_id_key

# Words spelt out before names are compared (on top of masterdata.identity's).
NAME_ABBREVIATIONS = {
    **ABBREVIATIONS,
    "ctr": "center", "cntr": "center", "cent": "center", "centre": "center",
    "centres": "centers", "ctrs": "centers",
    "assn": "association", "assoc": "association", "asso": "association",
    "dept": "department", "univ": "university", "inst": "institute", "acad": "academy",
    "sch": "school", "schl": "school", "comm": "community", "cmty": "community",
    "cmnty": "community", "svc": "services", "serv": "services", "hosp": "hospital",
    "med": "medical", "natl": "national", "bros": "brothers", "mt": "mount", "st": "saint",
    "ste": "saint", "dev": "development", "devel": "development", "educ": "education",
    "ed": "education", "elem": "elementary", "intl": "international", "chld": "child",
    "childrens": "children", "fdn": "foundation", "ch": "church",
    "hq": "headquarters", "mgmt": "management", "mgt": "management", "dist": "district",
    "cty": "county", "twp": "township", "lrng": "learning", "prog": "program",
    "progs": "programs", "hs": "high school", "jr": "junior", "sr": "senior",
}  # fmt: skip
# Words that carry nothing when comparing names (legal forms come from identity).
NAME_STOPWORDS = frozenset("the and of for at a an in on to".split()) | LEGAL_SUFFIXES
_EXPANSIONS = {word: tuple(long.split()) for word, long in NAME_ABBREVIATIONS.items()}
# Where an organisation name separates a parent from a site: " - ", " / ", ":", "(...)",
# "d/b/a", "c/o", " at ".
_PART_SPLIT = re.compile(
    r"\s+[-\u2013\u2014/|:]+\s*|\s*[-\u2013\u2014/|:]+\s+|[()\[\]]|\s*;\s*"
    r"|\b(?:d\s*/\s*b\s*/\s*a|dba|aka|c\s*/\s*o|t\s*/\s*a)\b",
    re.IGNORECASE,
)
_PART_MARKS = "-\u2013\u2014/|:()[];"
_NON_WORD = re.compile(r"[^a-z0-9]+")
_DOTTED = re.compile(r"\b([a-z])\.(?=[a-z]\.)")

STREET_TYPES = {
    "street": "st", "st": "st", "str": "st", "strasse": "st", "strase": "st", "stret": "st",
    "avenue": "ave", "ave": "ave", "av": "ave", "aven": "ave", "avn": "ave", "avenu": "ave",
    "boulevard": "blvd", "blvd": "blvd", "boul": "blvd", "blv": "blvd",
    "road": "rd", "rd": "rd", "drive": "dr", "dr": "dr", "drv": "dr",
    "lane": "ln", "ln": "ln", "place": "pl", "pl": "pl", "plaza": "plz", "plz": "plz",
    "court": "ct", "ct": "ct", "crt": "ct", "parkway": "pkwy", "pkwy": "pkwy", "pky": "pkwy",
    "highway": "hwy", "hwy": "hwy", "square": "sq", "sq": "sq", "terrace": "ter",
    "ter": "ter", "terr": "ter", "way": "way", "wy": "way", "circle": "cir", "cir": "cir",
    "trail": "trl", "trl": "trl", "expressway": "expy", "expy": "expy", "crescent": "cres",
    "cres": "cres", "close": "cl", "cl": "cl", "row": "row", "walk": "walk", "grove": "gr",
    "gardens": "gdns", "gdns": "gdns", "mews": "mews", "hill": "hill", "park": "park",
    "weg": "weg", "gasse": "gasse", "allee": "allee", "platz": "platz", "gracht": "gracht",
    "laan": "laan", "straat": "straat", "rue": "rue", "chemin": "chemin",
}  # fmt: skip
# German and Dutch write the type into the street's word: "hauptstrasse", "keizersgracht".
_GLUED_TYPES = ("strasse", "straat", "gracht", "laan", "weg", "platz", "gasse", "allee")
DIRECTIONS = {
    "n": "n", "north": "n", "s": "s", "south": "s", "e": "e", "east": "e", "w": "w",
    "west": "w", "ne": "ne", "northeast": "ne", "nw": "nw", "northwest": "nw", "se": "se",
    "southeast": "se", "sw": "sw", "southwest": "sw",
}  # fmt: skip
UNIT_WORDS = frozenset(
    "suite ste unit apt apartment fl floor flr room rm bldg building dept no lot box "
    "office ofc".split()
)
_ORDINAL_WORDS = {
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6",
    "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10",
}  # fmt: skip
_ADDRESS_TOKEN = re.compile(r"\d+(?:st|nd|rd|th)\b|\d+[a-z]?(?:\s*-\s*\d+[a-z]?)?\b|[a-z0-9]+|#")
_NUMBER = re.compile(r"^(\d+)([a-z]?)(?:-(\d+)[a-z]?)?$")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_US_ZIP = re.compile(r"^(\d{5})(?:\d{4})?$")


def fold(text: str) -> str:
    """Lower case without accents; ß is ss."""
    text = (text or "").replace("ß", "ss").replace("ẞ", "ss")
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


@lru_cache(maxsize=200_000)
def name_tokens(text: str) -> tuple[str, ...]:
    """The words of one name (or one part of it) that say which organisation it is."""
    text = fold(text).replace("&", " and ").replace("'", "")
    if "." in text:
        text = _DOTTED.sub(r"\1", text)  # s.a. → sa, u.s.a. → usa
    out: list[str] = []
    words = _NON_WORD.sub(" ", text).split()
    for word in words:
        expanded = _EXPANSIONS.get(word)
        if expanded is None:
            if word not in NAME_STOPWORDS:
                out.append(word)
        else:
            out.extend(piece for piece in expanded if piece not in NAME_STOPWORDS)
    if not out:  # a name made only of stopwords ("The Company") keeps them
        out = words
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NameParts:
    key: str  # all tokens, in order, space-separated
    tokens: tuple[str, ...]
    parts: tuple[str, ...]  # each organisation part's tokens joined ("" when a single part)


@lru_cache(maxsize=200_000)
def name_parts(legal_name: str) -> NameParts:
    legal_name = legal_name or ""
    lowered = legal_name.lower()
    if not any(mark in legal_name for mark in _PART_MARKS) and not (
        "dba" in lowered or "aka" in lowered
    ):
        tokens = name_tokens(legal_name)
        return NameParts(" ".join(tokens), tokens, ())
    pieces = [piece for piece in _PART_SPLIT.split(legal_name) if piece and piece.strip()]
    part_tokens = [name_tokens(piece) for piece in pieces]
    part_tokens = [tokens for tokens in part_tokens if tokens]
    tokens = tuple(token for part in part_tokens for token in part)
    parts = tuple(" ".join(part) for part in part_tokens) if len(part_tokens) > 1 else ()
    return NameParts(" ".join(tokens), tokens, parts)


@dataclass(frozen=True, slots=True)
class Address:
    number_low: int  # -1: no house number found
    number_high: int
    direction: str
    street: str  # the street's name without type or direction: "clark", "ogden", "63"
    street_type: str
    unit: str
    text: str  # the whole address, normalized, for addresses that do not parse

    @property
    def building_key(self) -> str:
        """House number + the street name's first word: what the address blocking pass
        joins on (a typo in a street type the parser did not recognise stays out of it)."""
        if self.number_low < 0 or not self.street:
            return ""
        return f"{self.number_low} {self.street.split()[0]}"


NO_ADDRESS = Address(-1, -1, "", "", "", "", "")


def _number_range(token: str) -> tuple[int, int] | None:
    match = _NUMBER.match(token.replace(" ", ""))
    if not match:
        return None
    low_text, _, high_text = match.groups()
    low = int(low_text)
    if not high_text:
        return low, low
    # "2210-16" is 2210..2216: the end repeats the start's leading digits.
    if len(high_text) < len(low_text):
        high_text = low_text[: len(low_text) - len(high_text)] + high_text
    high = int(high_text)
    return (low, high) if high >= low else (low, low)


@lru_cache(maxsize=200_000)
def parse_address(line1: str, line2: str = "") -> Address:
    """'2210-16 West Ogden Avenue, Suite 4' → 2210..2216, w, 'ogden', 'ave', unit '4'.

    The street comes from the first line; the second (a building, a locality) only joins
    the text compared when the street does not parse, unless the first line has no house
    number and the second has ("Acme House" / "12 High Street")."""
    first = _parse_line(line1)
    if line2 and first.number_low < 0:
        second = _parse_line(line2)
        if second.number_low >= 0:
            return second
    if line2 and line1:
        extra = " ".join(_ADDRESS_TOKEN.findall(fold(line2).replace(",", " ").replace(".", " ")))
        return Address(
            first.number_low, first.number_high, first.direction, first.street,
            first.street_type, first.unit, f"{first.text} {extra}".strip(),
        )  # fmt: skip
    return first if line1 else _parse_line(line2)


def _parse_line(line: str) -> Address:
    text = fold(line).replace("#", " # ")
    tokens = _ADDRESS_TOKEN.findall(text.replace(",", " ").replace(".", " "))
    if not tokens:
        return NO_ADDRESS
    unit = ""
    kept: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if (word in UNIT_WORDS or word == "#") and i + 1 < len(tokens):
            # "PO Box 12" is the address itself; a unit elsewhere is only a unit.
            if word == "box" and kept and kept[-1] in ("po", "p"):
                kept.append(word)
                i += 1
                continue
            unit = tokens[i + 1].replace(" ", "")
            i += 2
            continue
        kept.append(word)
        i += 1
    number: tuple[int, int] | None = None
    words: list[str] = []
    for position, token in enumerate(kept):
        if number is None and (position == 0 or not words or position == len(kept) - 1):
            found = _number_range(token)
            if found is not None and (position == 0 or not _ORDINAL.match(token)):
                number = found
                continue
        words.append(token)
    direction = ""
    street_type = ""
    cleaned: list[str] = []
    for token in words:
        ordinal = _ORDINAL.match(token)
        cleaned.append(ordinal.group(1) if ordinal else _ORDINAL_WORDS.get(token, token))
    words = cleaned
    if len(words) > 1 and words[-1] in STREET_TYPES:
        street_type = STREET_TYPES[words[-1]]
        words = words[:-1]
    if len(words) > 1 and words[0] in DIRECTIONS:
        direction = DIRECTIONS[words[0]]
        words = words[1:]
    if len(words) > 1 and words[-1] in DIRECTIONS:
        direction = direction or DIRECTIONS[words[-1]]
        words = words[:-1]
    if len(words) > 1 and words[0] in ("rue", "avenue", "chemin", "boulevard", "place"):
        street_type = street_type or STREET_TYPES.get(words[0], words[0])
        words = words[1:]
    if len(words) == 1 and not street_type:
        for glued in _GLUED_TYPES:
            if words[0].endswith(glued) and len(words[0]) > len(glued) + 2:
                words = [words[0][: -len(glued)]]
                street_type = STREET_TYPES.get(glued, glued)
                break
    low, high = number if number is not None else (-1, -1)
    return Address(low, high, direction, " ".join(words), street_type, unit, " ".join(kept))


def postcode_key(postcode: str, country: str = "") -> str:
    """Upper case without spaces; a US ZIP+4 is its five-digit ZIP."""
    key = re.sub(r"[^0-9A-Za-z]", "", postcode or "").upper()
    if country in ("US", "") and key.isdigit():
        match = _US_ZIP.match(key)
        if match:
            return match.group(1)
    return key


def phone_key(phone: str) -> str:
    """The last nine digits, extension dropped: '+44 20 7946 0018' and '020 7946 0018'
    agree, so do '(773) 555-0100 ext. 12' and '773.555.0100'."""
    text = (phone or "").lower()
    for mark in ("ext", "x", "#"):
        if mark in text:
            text = text.split(mark, 1)[0]
    digits = re.sub(r"\D", "", text)
    return digits[-9:] if len(digits) >= 7 else ""


def email_key(email: str) -> str:
    return (email or "").strip().lower()


@dataclass(slots=True)
class Record:
    """What matching needs of one record, normalized once."""

    pk: int
    country: str
    name: NameParts
    city: str
    tax_id: str
    domain: str
    address: Address
    postcode: str
    phone: str
    email: str
    identity_name_key: str = ""  # masterdata.identity's key, part of the fingerprint

    def fingerprint_part(self) -> str:
        a = self.address
        return "|".join(
            (
                self.name.key, self.identity_name_key, self.tax_id, self.domain,
                f"{a.number_low}-{a.number_high} {a.direction} {a.street} {a.street_type} "
                f"{a.unit} {a.text}",
                self.postcode, self.phone, self.email, self.country, self.city,
            )
        )  # fmt: skip


def record(
    *,
    pk: int,
    legal_name: str,
    country: str = "",
    tax_id: str = "",
    domain: str = "",
    address_line1: str = "",
    address_line2: str = "",
    postcode: str = "",
    phone: str = "",
    email: str = "",
    city: str = "",
    tax_id_normalized: str | None = None,
    domain_normalized: str | None = None,
    name_key_normalized: str | None = None,
) -> Record:
    """A record from raw field values (stored accounts pass their stored keys)."""
    country = (country or "").strip().upper()
    return Record(
        pk=pk,
        country=country,
        name=name_parts(legal_name or ""),
        city=_NON_WORD.sub(" ", fold(city)).strip(),
        tax_id=tax_id_key(tax_id, country) if tax_id_normalized is None else tax_id_normalized,
        domain=(domain_key(domain) or domain_key(email))
        if domain_normalized is None
        else domain_normalized,
        address=parse_address(address_line1 or "", address_line2 or "")
        if (address_line1 or address_line2)
        else NO_ADDRESS,
        postcode=postcode_key(postcode, country),
        phone=phone_key(phone),
        email=email_key(email),
        identity_name_key=name_key(legal_name or "")
        if name_key_normalized is None
        else name_key_normalized,
    )


def pair_fingerprint(a: Record, b: Record) -> str:
    """Changes when any compared field of either record changes."""
    first, second = (a, b) if a.pk < b.pk else (b, a)
    raw = f"{first.pk}#{first.fingerprint_part()}#{second.pk}#{second.fingerprint_part()}"
    return hashlib.sha256(raw.encode()).hexdigest()
