"""The matching pipeline: comparisons, blocking, the learned model, clusters, sites."""

from __future__ import annotations

from collections import Counter

import pytest

from masterdata.duplicates import evaluate
from masterdata.matching.blocking import block, pairs_completeness
from masterdata.matching.clusters import clusters, is_sites
from masterdata.matching.compare import (
    MISSING,
    TokenWeights,
    address_level,
    compare,
    domain_level,
    location_level,
    name_similarity,
    phone_level,
)
from masterdata.matching.model import fit, survey
from masterdata.matching.normalize import Address, name_parts, parse_address, record
from masterdata.matching.pipeline import match
from masterdata.synthetic import labelled_set

CORPUS = [
    "Northside Youth Centers - Riverdale Campus", "Northside Youth Centers",
    "Hillcrest Association - Riverdale Learning Ctr", "Riverdale Learning Center",
    "Oakwood Learning Center", "Lakeview Learning Center", "Acme Plumbing",
    "Brightwater Analytics", "Maplewood Family Services", "Glenwood Child Development Center",
]  # fmt: skip
WEIGHTS = TokenWeights(name_parts(name) for name in CORPUS)
NAME_LEVELS = ("same", "close", "contained", "partial", "different")


def name_level(a: str, b: str) -> str:
    level, _ = name_similarity(name_parts(a), name_parts(b), WEIGHTS)
    return "missing" if level == MISSING else NAME_LEVELS[level]


# --- Names ------------------------------------------------------------------------------------


def test_a_site_named_inside_its_parents_name_is_contained():
    # given
    parent_site = "Northside Youth Centers - Riverdale Campus"
    # when
    level = name_level(parent_site, "Northside Youth Centers")
    # then
    assert level == "contained"


def test_a_site_named_alone_is_inside_parent_dash_site_with_an_abbreviation():
    # given
    parent_site = "Hillcrest Association - Riverdale Learning Ctr"
    # when
    level = name_level("Riverdale Learning Center", parent_site)
    # then
    assert level == "contained"


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("RIVERDALE LEARINING CENTER", "close"),  # a typo, in capitals
        ("Riverdale Learning Cen", "close"),  # cut at a field's length
        ("Riverdale Lrng Ctr", "same"),  # abbreviations spelt out
        ("Center Riverdale Learning", "close"),  # another word order
        ("Oakwood Learning Center", "different"),  # only the common words shared
        ("Acme Plumbing", "different"),
        ("", "missing"),
    ],
)
def test_names_are_graded_by_their_rare_words(other, expected):
    # given
    name = "Riverdale Learning Center"
    # when
    level = name_level(name, other)
    # then
    assert level == expected


def test_a_name_splits_into_its_organisation_parts():
    # given
    raw = "St. Mary's Child Dev. Ctr d/b/a Little Lambs"
    # when
    parts = name_parts(raw)
    # then
    assert parts.tokens == (
        "saint", "marys", "child", "development", "center", "little", "lambs"
    )  # fmt: skip
    assert parts.parts == ("saint marys child development center", "little lambs")


# --- Addresses ----------------------------------------------------------------------------


def test_an_address_parses_into_number_range_direction_street_type_and_unit():
    # given
    raw = "2210-16 West Ogden Avenue, Suite 4"
    # when
    address = parse_address(raw)
    # then
    assert address == Address(2210, 2216, "w", "ogden", "ave", "4", "2210-16 west ogden avenue")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("4410 N Clark St.", "4410 N CLARK", 0),  # street type left out
        ("2210 W Ogden", "2210-16 West Ogden Avenue", 0),  # inside the range
        ("1600 W. 63rd St", "1600 West 63 Street", 0),  # ordinal, direction spelt out
        ("12 High St, Suite 4", "12 High St, Suite 5", 1),  # another unit
        ("4410 N Clark St", "4500 N Clark St", 2),  # the same street, another number
        ("5124 E Damen Blvd", "5124 W Damen Blvd", 2),  # the other side of town
        ("12 High Street", "14 Station Road", 3),
    ],
)
def test_addresses_are_graded_by_building(a, b, expected):
    # given
    left, right = parse_address(a), parse_address(b)
    # when
    level = address_level(left, right)
    # then
    assert level == expected


def test_the_same_building_with_a_postcode_missing_on_one_side_is_close_not_different():
    # given
    a = record(pk=1, legal_name="A", address_line1="4410 N Clark St", postcode="60640")
    b = record(pk=2, legal_name="B", address_line1="4410 N CLARK", postcode="")
    c = record(pk=3, legal_name="C", address_line1="4410 N Clark", postcode="60640-1234")
    # when
    levels = (location_level(a, b), location_level(a, c))
    # then
    assert levels == (1, 0)  # close; same (ZIP+4 is its ZIP)


# --- Identifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("(773) 555-0100", "773.555.0100 ext. 12", 0),
        ("+1 773 555 0100", "(312) 555-0100", 1),  # another area code
        ("(773) 555-0100", "(773) 555-2937", 2),
        ("(773) 555-0100", "(773) 555-0010", 1),  # two neighbouring digits swapped
        ("(773) 555-0100", "", MISSING),
    ],
)
def test_phones_are_graded_by_their_digits(a, b, expected):
    # given
    left, right = record(pk=1, legal_name="A", phone=a), record(pk=2, legal_name="B", phone=b)
    # when
    level = phone_level(left.phone, right.phone)
    # then
    assert level == expected


def test_the_same_email_outranks_the_same_domain_and_free_mail_says_nothing():
    # given
    a = record(pk=1, legal_name="A", email="billing@acme.com", domain="acme.com")
    b = record(pk=2, legal_name="B", email="billing@acme.com")
    c = record(pk=3, legal_name="C", domain="https://www.acme.com/")
    d = record(pk=4, legal_name="D", email="acme@gmail.com")
    # when
    levels = (domain_level(a, b), domain_level(a, c), domain_level(c, d))
    # then
    assert levels == (0, 1, MISSING)


# --- The learned model ------------------------------------------------------------------------


def small_set() -> tuple[list, Counter]:
    labelled = labelled_set(companies=800, seed=3)
    rows = [
        record(
            pk=index, legal_name=a.legal_name, country=a.country, tax_id=a.tax_id,
            domain=a.domain, address_line1=a.address_line1, city=a.city, postcode=a.postcode,
            phone=a.phone, email=a.email,
        )
        for index, a in enumerate(labelled.accounts, start=1)
    ]  # fmt: skip
    weights = TokenWeights(row.name for row in rows)
    blocking = block(rows, weights)
    patterns: Counter = Counter(
        compare(rows[i], rows[j], weights) for i, j in blocking.index_pairs()
    )
    return rows, patterns


def test_em_converges_and_learns_that_agreement_means_a_match():
    # given
    rows, patterns = small_set()
    weights = TokenWeights(row.name for row in rows)
    # when
    model = fit(patterns, records=len(rows), population=survey(rows, weights))
    # then
    assert model.converged is True
    assert model.iterations < 3 * 3 * 200
    bits = {
        (field, level): model.level_weight(field, index)
        for field, level, index in (
            ("name", "same", 0), ("name", "different", 4), ("phone", "same", 0),
            ("phone", "different", 2), ("tax_id", "same", 0), ("tax_id", "different", 1),
            ("address", "same", 0), ("address", "different", 4),
        )
    }  # fmt: skip
    assert bits[("name", "same")] > 10 > 0 > bits[("name", "different")]
    assert bits[("phone", "same")] > 10 > 0 > bits[("phone", "different")]
    assert bits[("tax_id", "same")] > 10 > 0 > bits[("tax_id", "different")]
    assert bits[("address", "same")] > 10 > 0 > bits[("address", "different")]
    assert 0 < model.prior < 1e-3


def test_a_missing_field_adds_no_weight():
    # given
    rows, patterns = small_set()
    weights = TokenWeights(row.name for row in rows)
    model = fit(patterns, records=len(rows), population=survey(rows, weights))
    a = record(pk=1, legal_name="Kestrel Data", phone="+44 113 496 0000")
    b = record(pk=2, legal_name="Kestrel Data")
    # when
    bits = model.weights(compare(a, b, weights), a, b)
    # then
    assert bits[2] == 0.0  # phone
    assert bits[1] == 0.0  # tax id


def test_an_agreement_on_a_common_value_weighs_less():
    # given
    rows = [
        record(pk=n, legal_name="YMCA" if n <= 10 else f"Org {n}", phone=f"773555{n:04d}")
        for n in range(1, 41)
    ]
    weights = TokenWeights(row.name for row in rows)
    model = fit(Counter(), records=len(rows), population=survey(rows, weights))
    ymca_a, ymca_b, rare_a = rows[0], rows[1], rows[20]
    rare_b = record(pk=99, legal_name=rare_a.name.key)
    # when
    common = model.weights(compare(ymca_a, ymca_b, weights), ymca_a, ymca_b)[0]
    rare = model.weights(compare(rare_a, rare_b, weights), rare_a, rare_b)[0]
    # then
    assert model.value_u("name", "ymca") == pytest.approx(6 / 40)  # 10 hold it: 6 beyond 4
    assert common < rare


# --- Blocking ---------------------------------------------------------------------------------


def test_blocking_keeps_every_true_pair_of_the_labelled_set():
    # given
    labelled = labelled_set(companies=3000, seed=5)
    # when
    quality = evaluate(labelled, threshold=0.5)
    # then
    assert quality.pairs_completeness == 1.0
    assert quality.reduction_ratio > 0.999


@pytest.mark.parametrize(
    ("a", "b", "joined_by"),
    [
        ({"legal_name": "Hillcrest Association", "phone": "(773) 555-0100"},
         {"legal_name": "Riverdale Learning Center", "phone": "773 555 0100"}, "phone"),
        ({"legal_name": "Hillcrest Association", "address_line1": "2210 W Ogden Ave",
          "postcode": "60608"},
         {"legal_name": "Riverdale Learning Center", "address_line1": "2210-16 W OGDEN",
          "postcode": "60608"}, "building"),
        ({"legal_name": "Northside Youth Centers - Riverdale Campus"},
         {"legal_name": "Riverdale Campus"}, "whole_name"),
        ({"legal_name": "Acme", "tax_id": "GB123456789"},
         {"legal_name": "Zenith", "tax_id": "GB 123 456 789"}, "tax_id"),
        ({"legal_name": "Acme", "domain": "acme.com"},
         {"legal_name": "Zenith", "email": "x@acme.com"}, "domain"),
    ],
)  # fmt: skip
def test_each_blocking_pass_joins_what_it_is_for(a, b, joined_by):
    # given
    filler = [record(pk=10 + n, legal_name=f"Filler {n} Ltd") for n in range(5)]
    rows = [record(pk=1, **a), record(pk=2, **b), *filler]
    weights = TokenWeights(row.name for row in rows)
    # when
    blocking = block(rows, weights)
    # then
    assert pairs_completeness(blocking, [(0, 1)]) == 1.0
    assert blocking.by_pass[joined_by] >= 1


# --- Clusters and sites -----------------------------------------------------------------------


def test_a_group_that_holds_together_stays_one_cluster():
    # given
    edges = {(1, 2): 20.0, (2, 3): 18.0}
    # when
    groups = clusters(edges, lambda a, b: 5.0)  # 1 and 3: evidence for, not against
    # then
    assert groups == [[1, 2, 3]]


def test_a_chain_whose_ends_conflict_is_cut_at_its_weakest_link():
    # given: 1-2 and 2-3 matched, but 1 and 3 have a different tax id and address
    edges = {(1, 2): 20.0, (2, 3): 12.0, (4, 5): 30.0}
    # when
    groups = clusters(edges, lambda a, b: -9.0)
    # then
    assert groups == [[1, 2], [4, 5]]


def test_one_organisations_sites_are_flagged_even_on_one_central_phone():
    # given
    site_a = record(pk=1, legal_name="Logan Foundation", address_line1="6400 N Sacramento Ave",
                    postcode="60645", phone="(312) 134-3633")  # fmt: skip
    site_b = record(pk=2, legal_name="LOGAN FOUNDATION", address_line1="749 W Lawndale Ave",
                    postcode="60608", phone="(312) 134-3633")  # fmt: skip
    rewritten = record(pk=3, legal_name="Logan Foundation", address_line1="6400 NORTH SACRAMENTO",
                       postcode="", phone="")  # fmt: skip
    mistyped = record(pk=4, legal_name="Logan Foundation", address_line1="6040 N Sacramento Ave",
                      postcode="60645")  # fmt: skip
    rows = (site_a, site_b, rewritten, mistyped)
    weights = TokenWeights(row.name for row in rows)
    # when
    flags = [is_sites(compare(site_a, other, weights), site_a, other) for other in rows[1:]]
    # then
    assert flags == [True, False, False]


def test_the_pipeline_scores_parent_site_twins_and_leaves_sites_apart():
    # given: one parent's two sites, one of them listed twice by two systems
    rows = [
        record(pk=1, legal_name="Northside Youth Centers - Riverdale Campus",
               address_line1="4410 N Clark St.", postcode="60640", phone="(773) 555-0100"),
        record(pk=2, legal_name="RIVERDALE CAMPUS", address_line1="4410 N CLARK",
               phone="773-555-0100"),
        record(pk=3, legal_name="Northside Youth Centers - Hillcrest Campus",
               address_line1="2210 W Ogden Ave", postcode="60608", phone="(773) 555-0199"),
        *[record(pk=10 + n, legal_name=f"Filler {n} Ltd", address_line1=f"{n} Main St",
                 phone=f"(312) 555-{n:04d}") for n in range(30)],
    ]  # fmt: skip
    # when
    result = match(rows, threshold=0.5)
    # then
    assert [(pair.a, pair.b) for pair in result.duplicates] == [(1, 2)]
    assert result.clusters == [[1, 2]]
