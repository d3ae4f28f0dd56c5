"""Identity resolution: which canonical Account a system's customer is.

Order of evidence: the crosswalk (the system already told us its id), then the tax id
(normalized per country: VAT prefix and punctuation removed), then the web domain
(normalized; free-mail domains never count), then the normalized legal name + country.
The first level that finds anything decides: one account is a match, several distinct
accounts are an ambiguity for a data steward, never a guess.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from masterdata.models import Account, AccountStatus, ExternalId
from masterdata.selectors import account_by_enterprise_id

FREE_MAIL_DOMAINS = frozenset(
    "gmail.com googlemail.com yahoo.com yahoo.co.uk hotmail.com outlook.com live.com "
    "aol.com icloud.com me.com gmx.de gmx.net web.de proton.me protonmail.com mail.com "
    "yandex.ru qq.com 163.com orange.fr free.fr t-online.de".split()
)
# Legal-form suffixes and noise words dropped from names before comparing.
LEGAL_SUFFIXES = frozenset(
    "inc incorporated corp corporation co company llc llp lp ltd limited plc gmbh ag kg ohg "
    "ug sa sas sarl srl spa bv nv ab as asa oy oyj aps pty pte kk group holding holdings "
    "the and".split()
)
ABBREVIATIONS = {
    "intl": "international",
    "tech": "technologies",
    "technology": "technologies",
    "mfg": "manufacturing",
    "svcs": "services",
    "sys": "systems",
}


# The VAT prefix of a country where it differs from its ISO code (Greece uses EL).
VAT_PREFIX = {"GR": "EL"}
# Words some countries print after the number: Swiss "CHE-123.456.789 MWST/TVA/IVA".
_VAT_SUFFIXES = ("MWST", "TVA", "IVA")


def tax_id_key(tax_id: str, country: str = "") -> str:
    """'GB 123-456-789' and 'gb123456789' are the same VAT number: 'GB123456789'.

    Country formats: a number given without its prefix gets the country's VAT prefix
    (Greece's is EL, so 'GR123…' and '123…' in GR both become 'EL123…'); Swiss numbers lose
    their MWST/TVA/IVA suffix; a US EIN '47-3816290' becomes 'US473816290'."""
    key = re.sub(r"[^0-9A-Za-z]", "", tax_id or "").upper()
    if not key:
        return ""
    for suffix in _VAT_SUFFIXES:
        if key.startswith("CHE") and key.endswith(suffix):
            key = key[: -len(suffix)]
    country = (country or "").upper()
    prefix = VAT_PREFIX.get(country, country)
    if key[:2] in VAT_PREFIX:
        key = VAT_PREFIX[key[:2]] + key[2:]
    if prefix and not key.startswith(prefix) and not key[:2].isalpha():
        key = prefix + key  # a number given without its VAT prefix
    return key


def domain_key(value: str) -> str:
    """'https://www.Acme.com/about' → 'acme.com'; an e-mail address gives its domain;
    free-mail providers give '' (they say nothing about the company)."""
    value = (value or "").strip().lower()
    if not value:
        return ""
    if "@" in value:
        value = value.rsplit("@", 1)[1]
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value)
    value = value.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].strip(".")
    if value.startswith("www."):
        value = value[4:]
    if value in FREE_MAIL_DOMAINS or "." not in value:
        return ""
    return value


def name_key(name: str) -> str:
    """Case, accents, punctuation, legal suffixes and common abbreviations folded away."""
    text = unicodedata.normalize("NFKD", name or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("&", " and ")
    text = re.sub(r"\b([a-z])\.(?=[a-z]\.)", r"\1", text)  # s.a. → sa, b.v. → bv
    text = re.sub(r"[^a-z0-9]+", " ", text)
    words = [ABBREVIATIONS.get(word, word) for word in text.split()]
    kept = [word for word in words if word not in LEGAL_SUFFIXES]
    return " ".join(kept or words)


def account_keys(
    *, legal_name: str, country: str, tax_id: str, domain: str, email: str = ""
) -> dict[str, str]:
    return {
        "tax_id_key": tax_id_key(tax_id, country),
        "domain_key": domain_key(domain) or domain_key(email),
        "name_key": name_key(legal_name),
    }


@dataclass(frozen=True)
class Resolution:
    status: str  # "match" | "none" | "ambiguous"
    account: Account | None = None
    level: str = ""  # crosswalk | tax_id | domain | name
    evidence: dict[str, Any] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)  # enterprise ids when ambiguous


def _survivors(accounts: list[Account]) -> list[Account]:
    """Distinct live accounts (a merged account counts as its survivor)."""
    seen: dict[int, Account] = {}
    for account in accounts:
        live = account_by_enterprise_id(enterprise_id=account.enterprise_id)
        if live is not None:
            seen[live.pk] = live
    return sorted(seen.values(), key=lambda a: a.pk)


def identity_resolve(
    *,
    system: str,
    external_id: str,
    legal_name: str,
    country: str,
    tax_id: str = "",
    domain: str = "",
    email: str = "",
) -> Resolution:
    """Find the canonical account for a customer as one system sent it."""
    if external_id:
        link = ExternalId.objects.filter(
            system=system, object_type="account", external_id=external_id
        ).first()
        if link is not None:
            account = account_by_enterprise_id(enterprise_id=link.enterprise_id)
            if account is not None:
                return Resolution(
                    "match", account, "crosswalk", {"crosswalk": f"{system}:{external_id}"}
                )
    keys = account_keys(
        legal_name=legal_name, country=country, tax_id=tax_id, domain=domain, email=email
    )
    live = Account.objects.filter(status__in=[AccountStatus.ACTIVE, AccountStatus.MERGED])
    levels: list[tuple[str, dict[str, str]]] = []
    if keys["tax_id_key"]:
        levels.append(("tax_id", {"tax_id_key": keys["tax_id_key"]}))
    if keys["domain_key"]:
        levels.append(("domain", {"domain_key": keys["domain_key"]}))
    if keys["name_key"]:
        levels.append(("name", {"name_key": keys["name_key"], "country": country.upper()}))
    for level, lookup in levels:
        found = _survivors(list(live.filter(**lookup).order_by("pk")[:20]))
        if len(found) == 1:
            return Resolution("match", found[0], level, dict(lookup))
        if len(found) > 1:
            return Resolution(
                "ambiguous",
                None,
                level,
                dict(lookup),
                candidates=[account.enterprise_id for account in found],
            )
    return Resolution("none", evidence=keys)
