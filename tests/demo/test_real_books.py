"""The lifecycle rehearsal's books check on the real systems fails when it should: a record
held twice is a duplicate, a record missing or a quantity differing is a disagreement."""

from __future__ import annotations

from typing import Any

from demo.real_books import books_compare, stripe_held

EXPECTED = {
    "CTR-000001": {
        "sale.sale ORD-000001": 1,
        "sale.sale CTR-000001:v2": 1,
        "sale.sale CTR-000001:v3": 0,
    },
    "CTR-000002": {"sale.sale ORD-000002": 1, "sale.sale ORD-000007:return": 1},
}


def test_books_that_agree_pass():
    books = books_compare("tryton", EXPECTED, {cid: dict(facts) for cid, facts in EXPECTED.items()})

    assert books.ok
    assert (books.contracts, books.agreeing, books.disagreeing, books.duplicates) == (2, 2, 0, 0)
    assert (books.records_expected, books.records_held) == (4, 4)


def test_a_planted_duplicate_is_found_and_fails_the_books():
    held = {cid: dict(facts) for cid, facts in EXPECTED.items()}
    held["CTR-000001"]["sale.sale CTR-000001:v2"] = 2  # a renewal's sale made twice

    books = books_compare("tryton", EXPECTED, held)

    assert not books.ok
    assert books.duplicates == 1
    assert books.duplicate_examples == ["CTR-000001 sale.sale CTR-000001:v2 x2"]
    assert books.disagreeing == 1 and books.agreeing == 1


def test_a_planted_missing_record_and_an_extra_one_are_disagreements():
    held = {cid: dict(facts) for cid, facts in EXPECTED.items()}
    del held["CTR-000002"]["sale.sale ORD-000007:return"]  # a downgrade's return never made
    held["CTR-000001"]["sale.sale CTR-000001:v3"] = 1  # a parked version's sale made anyway

    books = books_compare("tryton", EXPECTED, held)

    assert not books.ok
    assert books.duplicates == 0
    assert books.disagreeing == 2
    assert books.disagreeing_examples == [
        "CTR-000001: sale.sale CTR-000001:v3: Tandem 0, tryton 1",
        "CTR-000002: sale.sale ORD-000007:return: Tandem 1, tryton 0",
    ]


def test_a_contract_the_system_does_not_know_disagrees():
    books = books_compare("stripe", {"CTR-000003": {"subscription ORD-000003": 1}}, {})

    assert not books.ok
    assert books.disagreeing_examples == ["CTR-000003: subscription ORD-000003: Tandem 1, stripe 0"]


def _subscription(ref: str, quantities: list[int], status: str = "active") -> dict[str, Any]:
    return {
        "id": f"sub_{ref}",
        "status": status,
        "cancel_at_period_end": False,
        "metadata": {"tandem_order": ref, "tandem_contract": "CTR-000001"},
        "items": {"data": [{"quantity": q} for q in quantities]},
    }


def test_stripe_subscriptions_are_counted_by_order_with_their_quantities_line_by_line():
    expected = {
        "CTR-000001": {
            "subscription ORD-000001": 1,
            "status ORD-000001": "active",
            "quantities ORD-000001": "2,5",
        }
    }
    right = stripe_held([_subscription("ORD-000001", [5, 2])])
    twice = stripe_held([_subscription("ORD-000001", [5, 2]), _subscription("ORD-000001", [5, 2])])
    wrong_quantity = stripe_held([_subscription("ORD-000001", [5, 3])])

    assert books_compare("stripe", expected, {"CTR-000001": right}).ok
    doubled = books_compare("stripe", expected, {"CTR-000001": twice})
    assert doubled.duplicate_examples == ["CTR-000001 subscription ORD-000001 x2"]
    differing = books_compare("stripe", expected, {"CTR-000001": wrong_quantity})
    assert differing.duplicates == 0
    assert differing.disagreeing_examples == [
        "CTR-000001: quantities ORD-000001: Tandem 2,5, stripe 3,5"
    ]
