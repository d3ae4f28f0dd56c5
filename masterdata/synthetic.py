"""A labelled set of synthetic customers for measuring duplicate detection (and the bench).

Companies are generated per country with realistic legal names, tax ids, domains, addresses,
phones and e-mails. A share of them get a duplicate record as another system would have
keyed it: a typo, another legal suffix, an abbreviation, the words in another order, a moved
address, a tax id typed differently, fields missing. Hard negatives are generated on purpose:
subsidiaries of one group sharing its domain (different tax ids and addresses), small
businesses on the same free-mail provider, and companies whose names differ by one word.
The true duplicate pairs are the labels; everything else is a non-duplicate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

COUNTRIES = {
    # country: (suffixes, tld, phone prefix, postcode format, cities)
    "GB": (["Ltd", "Limited", "PLC", "Ltd."], "co.uk", "+44", "A9 9AA",
           ["London", "Leeds", "Bristol", "Manchester"]),
    "DE": (["GmbH", "AG", "GmbH & Co. KG"], "de", "+49", "99999",
           ["Berlin", "München", "Köln", "Hamburg"]),
    "FR": (["SA", "SAS", "S.A.R.L.", "S.A."], "fr", "+33", "99999",
           ["Paris", "Lyon", "Nantes", "Lille"]),
    "NL": (["B.V.", "BV", "N.V."], "nl", "+31", "9999 AA",
           ["Amsterdam", "Utrecht", "Rotterdam", "Eindhoven"]),
    "US": (["Inc", "Inc.", "Corp", "LLC", "Corporation"], "com", "+1", "99999",
           ["Austin", "Denver", "Boston", "Seattle"]),
}  # fmt: skip
FIRST = (
    "Acme Apex Atlas Aurora Beacon Blue Bright Cedar Cobalt Crest Delta Eagle Echo Ember "
    "Falcon Fjord Gamma Granite Harbor Helix Horizon Indigo Iron Juniper Kestrel Keystone "
    "Lumen Maple Meridian Nimbus Nova Oak Onyx Orbit Pacific Peak Pine Pioneer Polar Prism "
    "Quantum Quartz Raven Redwood Ridge River Sage Sierra Silver Solar Spruce Sterling Summit "
    "Tidal Titan Topaz Vertex Vista Willow Zenith Alder Amber Arrow Birch Boulder Canyon "
    "Citadel Comet Coral Cypress Dune Elm Everest Fern Forge Glacier Grove Hawk Heron Jade "
    "Lark Lotus Mesa Monarch Nordic Obsidian Opal Osprey Pebble Pinnacle Quill Rowan Sable "
    "Sequoia Shore Slate Sparrow Stone Sunrise Talon Thistle Timber Trident Tundra Umber "
    "Valley Velvet Wren Yarrow Zephyr"
).split()
SECOND = (
    "Analytics Bakery Biotech Builders Capital Chemicals Cloud Consulting Data Design "
    "Dynamics Electric Energy Engineering Foods Freight Health Industries Insurance Labs "
    "Logistics Machines Manufacturing Media Medical Metals Mining Networks Optics Partners "
    "Pharma Plastics Power Printing Robotics Security Services Software Solutions Steel "
    "Systems Technologies Telecom Textiles Trading Travel Ventures Wireless Works Motors"
).split()
MIDDLE = ["", "", "", "", "Global", "International", "United", "National", "Advanced", "First"]
ABBREVIATE = {
    "International": "Intl",
    "Technologies": "Tech",
    "Manufacturing": "Mfg",
    "Services": "Svcs",
    "Systems": "Sys",
}
STREETS = ("High Street|Station Road|Church Lane|Market Square|Park Avenue|Mill Road|"
           "Hauptstraße|Bahnhofstraße|Rue de la Paix|Avenue Victor Hugo|Keizersgracht|"
           "Main Street|Oak Drive|Elm Street|Lake Boulevard|Harbour Place").split("|")  # fmt: skip
FREE_MAIL = ["gmail.com", "outlook.com", "yahoo.com", "gmx.de", "orange.fr"]
SURNAMES = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Wright Müller Schmidt "
    "Schneider Fischer Weber Martin Bernard Dubois Durand Leroy Jansen Visser Bakker"
).split()
TRADES = ["Plumbing", "Roofing", "Electrical", "Joinery", "Catering", "Cleaning", "Landscaping"]


@dataclass(frozen=True)
class SyntheticAccount:
    key: str  # unique label of this record in the set
    legal_name: str
    country: str
    currency: str
    tax_id: str
    domain: str
    address_line1: str
    city: str
    postcode: str
    phone: str
    email: str


@dataclass
class LabelledSet:
    accounts: list[SyntheticAccount]
    duplicate_pairs: set[frozenset[str]]  # keys of records that are one customer


CURRENCY = {"GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR", "US": "USD"}


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _postcode(rng: random.Random, fmt: str) -> str:
    out = []
    for ch in fmt:
        if ch == "9":
            out.append(rng.choice("0123456789"))
        elif ch == "A":
            out.append(rng.choice("ABCDEFGHJKLMNPRSTUWXYZ"))
        else:
            out.append(ch)
    return "".join(out)


def _tax_id(rng: random.Random, country: str) -> str:
    if country == "US":
        return f"{_digits(rng, 2)}-{_digits(rng, 7)}"
    if country == "FR":
        return f"FR{_digits(rng, 11)}"
    if country == "NL":
        return f"NL{_digits(rng, 9)}B01"
    return f"{country}{_digits(rng, 9)}"


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counter = 0
        self.names: set[str] = set()

    def key(self) -> str:
        self.counter += 1
        return f"S{self.counter:06d}"

    def company(self, *, core: str = "", country: str = "", free_mail: bool | None = None,
                tax: bool | None = None) -> SyntheticAccount:  # fmt: skip
        rng = self.rng
        country = country or rng.choice(list(COUNTRIES))
        suffixes, tld, dial, postfmt, cities = COUNTRIES[country]
        while not core:
            words = [rng.choice(FIRST), rng.choice(MIDDLE), rng.choice(SECOND)]
            if rng.random() < 0.5:
                words.insert(1, rng.choice(FIRST))
            candidate = " ".join(word for word in words if word)
            if candidate not in self.names:
                core = candidate
        while core in self.names:  # two companies never share a name here
            core = f"{core} {rng.choice(FIRST)}"
        self.names.add(core)
        name = f"{core} {rng.choice(suffixes)}"
        if free_mail is None:
            free_mail = rng.random() < 0.1
        domain = "" if free_mail else f"{_slug(core)}.{tld}"
        email = (
            f"{_slug(core)[:24]}@{rng.choice(FREE_MAIL)}" if free_mail
            else f"{rng.choice(['info', 'billing', 'accounts', 'finance'])}@{domain}"
        )  # fmt: skip
        if tax is None:
            tax = rng.random() < 0.7
        return SyntheticAccount(
            key=self.key(),
            legal_name=name,
            country=country,
            currency=CURRENCY[country],
            tax_id=_tax_id(rng, country) if tax else "",
            domain=domain,
            address_line1=f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
            city=rng.choice(cities),
            postcode=_postcode(rng, postfmt),
            phone=f"{dial} {_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 4)}",
            email=email if rng.random() < 0.8 else "",
        )

    # --- how another system keys the same customer ---------------------------------------

    def variant(self, base: SyntheticAccount) -> SyntheticAccount:
        rng = self.rng
        out = replace(base, key=self.key())
        changes = rng.sample(
            ["typo", "suffix", "abbreviate", "order", "case", "address", "tax_format",
             "domain_format", "drop_tax", "drop_phone", "drop_email", "phone_format"],
            k=rng.randint(1, 4),
        )  # fmt: skip
        name = out.legal_name
        for change in changes:
            if change == "typo":
                name = self.typo(name)
            elif change == "suffix":
                core, _, _ = name.rpartition(" ")
                name = f"{core or name} {rng.choice(COUNTRIES[out.country][0])}"
            elif change == "abbreviate":
                for long_, short in ABBREVIATE.items():
                    name = name.replace(long_, short)
            elif change == "order":
                words = name.split()
                if len(words) >= 3:
                    words[0], words[1] = words[1], words[0]
                    name = " ".join(words)
            elif change == "case":
                name = name.upper()
            elif change == "address":
                _, _, _, postfmt, cities = COUNTRIES[out.country]
                out = replace(
                    out,
                    address_line1=f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
                    city=rng.choice(cities),
                    postcode=_postcode(rng, postfmt),
                )
            elif change == "tax_format" and out.tax_id:
                tax = out.tax_id
                tax = tax[2:] if tax[:2].isalpha() else tax.replace("-", "")
                out = replace(out, tax_id=" ".join([tax[:3], tax[3:6], tax[6:]]).lower())
            elif change == "domain_format" and out.domain:
                out = replace(out, domain=f"https://www.{out.domain}/")
            elif change == "drop_tax":
                out = replace(out, tax_id="")
            elif change == "drop_phone":
                out = replace(out, phone="")
            elif change == "drop_email":
                out = replace(out, email="")
            elif change == "phone_format" and out.phone:
                digits = "".join(ch for ch in out.phone if ch.isdigit())
                out = replace(out, phone=f"0{digits[-10:]}" if len(digits) > 10 else digits)
        return replace(out, legal_name=name)

    def typo(self, name: str) -> str:
        rng = self.rng
        positions = [i for i, ch in enumerate(name) if ch.isalpha()]
        i = rng.choice(positions[1:] or positions)
        kind = rng.choice(["swap", "drop", "double", "replace"])
        if kind == "swap" and i + 1 < len(name):
            return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
        if kind == "drop":
            return name[:i] + name[i + 1 :]
        if kind == "double":
            return name[:i] + name[i] + name[i:]
        return name[:i] + rng.choice("aeiourstln") + name[i + 1 :]

    # --- hard negatives ----------------------------------------------------------------------

    def subsidiaries(self) -> list[SyntheticAccount]:
        """A group and its subsidiaries in other countries: one domain, separate companies."""
        rng = self.rng
        parent = self.company(tax=True, free_mail=False)
        core = parent.legal_name.rsplit(" ", 1)[0]
        out = [parent]
        for country in rng.sample([c for c in COUNTRIES if c != parent.country], k=2):
            child = self.company(core=f"{core} {country}", country=country, free_mail=False,
                                 tax=True)  # fmt: skip
            out.append(
                replace(child, domain=parent.domain, email=f"{country.lower()}@{parent.domain}")
            )
        return out

    def free_mail_neighbours(self) -> list[SyntheticAccount]:
        """Two small businesses of one family on the same free-mail provider and street."""
        rng = self.rng
        surname = rng.choice(SURNAMES)
        first_trade, second_trade = rng.sample(TRADES, k=2)
        a = self.company(core=f"{surname} {first_trade}", free_mail=True, tax=False)
        b = self.company(core=f"{surname} {second_trade}", country=a.country, free_mail=True,
                         tax=False)  # fmt: skip
        provider = a.email.split("@")[-1] if a.email else "gmail.com"
        b = replace(
            b,
            address_line1=a.address_line1,
            city=a.city,
            postcode=a.postcode,
            email=f"{_slug(b.legal_name)[:24]}@{provider}",
        )
        return [a, b]

    def one_word_apart(self) -> list[SyntheticAccount]:
        """Two unrelated companies whose names differ in their trade only."""
        rng = self.rng
        first = rng.choice(FIRST)
        trade_a, trade_b = rng.sample(SECOND, k=2)
        country = rng.choice(list(COUNTRIES))
        return [
            self.company(core=f"{first} {trade_a}", country=country),
            self.company(core=f"{first} {trade_b}", country=country),
        ]


# --- Organisations with sites, as several source systems list them ----------------------------

PLACES = (
    "Riverdale Hillcrest Oakwood Lakeview Northside Southside Westlawn Eastgate Brookfield "
    "Maplewood Fairview Greenwood Ridgeway Parkside Glenwood Elmhurst Woodlawn Beverly "
    "Bridgeport Englewood Garfield Humboldt Irving Jefferson Kenwood Lincoln Marquette "
    "Norwood Oakland Pilsen Roseland Sheridan Uptown Wicker Austin Avondale Belmont Chatham "
    "Douglas Edgewater Gage Hegewisch Kelvyn Logan Morgan Portage Ravenswood Stockton "
    "Tremont Victory Washington Albany Bowen Carver Dunbar Emerson Franklin Grant Hamilton"
).split()
SITE_KINDS = (
    "Learning Center|Child Development Center|Head Start|Early Learning Academy|Day Care|"
    "Preschool|Family Center|Youth Center|Community School|Montessori School|Kids Academy|"
    "Early Childhood Center|Infant Toddler Center|Children's Center"
).split("|")
PARENT_KINDS = (
    "Youth Centers|Association|Family Services|Community Services|Church|Foundation|"
    "Schools|Institute|Health Centers|Neighborhood House|Settlement|Urban League"
).split("|")
US_STREETS = (
    "Clark|Ogden|Halsted|Ashland|Western|Pulaski|Cicero|Kedzie|Damen|Racine|Morgan|Wabash|"
    "Cottage Grove|Stony Island|King|Michigan|Lawndale|Central Park|Sacramento|California|"
    "Kostner|Laramie|Austin|Harlem|Madison|Roosevelt|Cermak|Archer|Garfield|Marquette|"
    "Division|Chicago|Grand|Fullerton|Diversey|Belmont|Addison|Irving Park|Montrose|"
    "Lawrence|Foster|Devon|Touhy|Howard|Broadway|Sheridan|Lincoln|Milwaukee|Elston|"
    "63rd|47th|55th|71st|79th|87th|95th|103rd|111th|35th|26th|18th"
).split("|")
US_STREET_TYPES = ["St", "Ave", "Blvd", "Rd", "Dr", "Pkwy", "Pl"]
SPELLED = {"St": "Street", "Ave": "Avenue", "Blvd": "Boulevard", "Rd": "Road", "Dr": "Drive",
           "Pkwy": "Parkway", "Pl": "Place", "N": "North", "S": "South", "E": "East",
           "W": "West"}  # fmt: skip
ORG_ABBREVIATE = {
    "Center": "Ctr",
    "Centers": "Ctrs",
    "Association": "Assn",
    "Development": "Dev",
    "Community": "Comm",
    "Children's": "Childrens",
    "Services": "Svcs",
    "Saint": "St",
    "Early": "Erly",
    "Academy": "Acad",
    "School": "Sch",
}


@dataclass(frozen=True)
class _Site:
    parent: str
    site: str
    number: int
    high: int  # the range's end, or number
    direction: str
    street: str
    street_type: str
    postcode: str
    phone: str


class _OrganisationGenerator:
    """Community organisations (a parent running one or more sites), each site listed by
    one or more source systems the way such lists differ in life."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.rng = gen.rng
        self.used: set[str] = set()

    def _unique(self, make: Any) -> str:
        for _ in range(50):
            name = make()
            if name not in self.used:
                self.used.add(name)
                return str(name)
        name = f"{make()} {self.rng.choice(PLACES)}"
        self.used.add(name)
        return str(name)

    def sites(self, count: int) -> list[_Site]:
        rng = self.rng
        parent = self._unique(lambda: f"{rng.choice(PLACES)} {rng.choice(PARENT_KINDS)}")
        # Some organisations answer every site's calls at one central number.
        central = f"(312) {_digits(rng, 3)}-{_digits(rng, 4)}" if rng.random() < 0.3 else ""
        out = []
        for _ in range(count):
            site = self._unique(lambda: f"{rng.choice(PLACES)} {rng.choice(SITE_KINDS)}")
            number = rng.randint(100, 9999)
            high = number + rng.choice([2, 4, 6, 8, 10]) if rng.random() < 0.15 else number
            out.append(
                _Site(
                    parent=parent, site=site, number=number, high=high,
                    direction=rng.choice("NSEW"), street=rng.choice(US_STREETS),
                    street_type=rng.choice(US_STREET_TYPES),
                    postcode=f"606{rng.randint(0, 99):02d}",
                    phone=central or f"(773) {_digits(rng, 3)}-{_digits(rng, 4)}",
                )
            )  # fmt: skip
        return out

    def record(self, site: _Site, *, style: str, source: int) -> SyntheticAccount:
        """One source system's record of a site. ``style``: how it names the site
        (site, parent - site, parent, site (parent)); later sources write more loosely."""
        name = {
            "site": site.site,
            "parent-site": f"{site.parent} - {site.site}",
            "parent": site.parent,
            "site-parent": f"{site.site} ({site.parent})",
        }[style]
        address = f"{site.number} {site.direction} {site.street} {site.street_type}"
        postcode: str = site.postcode
        phone: str = site.phone
        if source > 0:
            name, address, postcode, phone = self.rewrite(site, name, postcode, phone)
        return SyntheticAccount(
            key=self.gen.key(), legal_name=name, country="US", currency="USD", tax_id="",
            domain="", address_line1=address, city="Chicago", postcode=postcode, phone=phone,
            email="",
        )  # fmt: skip

    def rewrite(
        self, site: _Site, name: str, postcode: str, phone: str
    ) -> tuple[str, str, str, str]:
        rng = self.rng
        words = name.split()
        changes = rng.sample(
            ["typo", "caps", "truncate", "abbreviate", "no_type", "spell_out", "range",
             "no_postcode", "no_phone", "phone_format", "zip4", "period"],
            k=rng.randint(2, 5),
        )  # fmt: skip
        number = f"{site.number}"
        direction, street_type = site.direction, site.street_type
        address_suffix = ""
        for change in changes:
            if change == "typo":
                name = self.gen.typo(name)
            elif change == "caps":
                name = name.upper()
            elif change == "truncate" and len(name) > 24:
                name = name[: rng.randint(20, 28)].rstrip()
            elif change == "abbreviate":
                words = [ORG_ABBREVIATE.get(word, word) for word in name.split()]
                name = " ".join(words)
            elif change == "no_type":
                street_type = ""
            elif change == "spell_out":
                direction = SPELLED.get(direction, direction)
                street_type = SPELLED.get(street_type, street_type)
            elif change == "range" and site.high != site.number:
                number = f"{site.number}-{str(site.high)[-2:]}"
            elif change == "no_postcode":
                postcode = ""
            elif change == "no_phone":
                phone = ""
            elif change == "phone_format" and phone:
                phone = "".join(ch for ch in phone if ch.isdigit())
            elif change == "zip4" and postcode:
                postcode = f"{postcode}-{_digits(rng, 4)}"
            elif change == "period":
                address_suffix = "."
        address = " ".join(part for part in (number, direction, site.street, street_type) if part)
        if rng.random() < 0.5:
            address = address.upper()
        return name, address + address_suffix, postcode, phone


def organisations(
    gen: _Generator, *, records: int, duplicate_rate: float = 0.4
) -> tuple[list[SyntheticAccount], set[frozenset[str]]]:
    """About ``records`` records of community organisations and the true pairs among them.

    Duplicates (another source system's record of the same site): parent-site naming ("P -
    S" against "S", or the parent's name alone against the site's), the same address
    written with or without its street type, direction spelt out, as a range, in capitals,
    with the same phone (or it missing), the postcode missing or as ZIP+4, typos, capitals,
    names cut at a field's length, abbreviations. Negatives: one organisation's different
    sites, each listed under the parent's name alone (same name, different addresses; their
    own phones, or the parent's central number for a third of the organisations)."""
    maker = _OrganisationGenerator(gen)
    rng = gen.rng
    out: list[SyntheticAccount] = []
    pairs: set[frozenset[str]] = set()
    while len(out) < records:
        sites = maker.sites(rng.choice([1, 1, 1, 2, 2, 3, 4]))
        parent_named = len(sites) > 1 and rng.random() < 0.3
        for site in sites:
            style = "parent" if parent_named else rng.choice(["site", "parent-site"])
            group = [maker.record(site, style=style, source=0)]
            if rng.random() < duplicate_rate:
                other = rng.choice(
                    [s for s in ("site", "parent-site", "site-parent", "parent") if s != style]
                    if len(sites) == 1 or rng.random() < 0.5
                    else [s for s in ("site", "parent-site", "site-parent") if s != style]
                )
                group.append(maker.record(site, style=other, source=1))
                if rng.random() < 0.15:
                    group.append(maker.record(site, style=rng.choice(["site", "parent-site"]),
                                              source=2))  # fmt: skip
            out.extend(group)
            for i, first in enumerate(group):
                for second in group[i + 1 :]:
                    pairs.add(frozenset((first.key, second.key)))
    return out, pairs


def labelled_set(
    *,
    companies: int,
    seed: int = 7,
    duplicate_rate: float = 0.1,
    organisation_share: float = 0.1,
) -> LabelledSet:
    """``companies`` records: companies, about ``duplicate_rate`` of them with a duplicate,
    hard negatives making up about a tenth of the set, and ``organisation_share`` of
    community organisations with sites (``organisations``)."""
    gen = _Generator(seed)
    accounts: list[SyntheticAccount] = []
    pairs: set[frozenset[str]] = set()
    if organisation_share > 0:
        found, organisation_pairs = organisations(
            gen, records=int(companies * organisation_share),
            duplicate_rate=4 * duplicate_rate,
        )  # fmt: skip
        accounts.extend(found)
        pairs |= organisation_pairs
    hard = max(1, companies // 30)
    for _ in range(hard):
        accounts.extend(gen.subsidiaries())
        accounts.extend(gen.free_mail_neighbours())
        accounts.extend(gen.one_word_apart())
    while len(accounts) < companies:
        base = gen.company()
        accounts.append(base)
        if gen.rng.random() < duplicate_rate:
            twin = gen.variant(base)
            accounts.append(twin)
            pairs.add(frozenset((base.key, twin.key)))
    gen.rng.shuffle(accounts)
    return LabelledSet(accounts=accounts, duplicate_pairs=pairs)
