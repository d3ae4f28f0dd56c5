"""The data steward's job in a real browser, against the live server and a real Celery worker:
run duplicate detection, open the pair's side-by-side comparison, merge with a survivorship
choice, see the merged-away account's orders under the survivor, unmerge from the merge log
and see them back.
"""

from __future__ import annotations

from typing import Any

import pytest

from masterdata.models import (
    Account,
    AccountStatus,
    CandidateStatus,
    DuplicateCandidate,
    MergeRecord,
    MergeState,
)
from q2c.models import Order
from tests.browser.conftest import browser_login
from tests.integration.q2c_env import wait_until
from tests.masterdata import helpers

pytestmark = pytest.mark.integration


def test_a_steward_merges_a_detected_pair_sees_the_orders_move_and_unmerges_them_back(
    live_server: Any, start_worker: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given: two spellings of one company, each with its own orders; no candidate yet
    world = helpers.world()
    survivor, loser = world.survivor, world.loser
    loser_orders = sorted(
        Order.objects.filter(account=loser).values_list("enterprise_id", flat=True)
    )
    survivor_orders = sorted(
        Order.objects.filter(account=survivor).values_list("enterprise_id", flat=True)
    )
    assert len(loser_orders) == 1 and DuplicateCandidate.objects.count() == 0
    make_user("stella", role="data_steward")
    start_worker()
    base = live_server.url
    browser_login(page, base, "stella", "pw")

    # when: the steward runs detection from the queue and waits for the worker
    page.goto(f"{base}/duplicates/")
    page.get_by_role("button", name="Run detection now").click()
    assert "duplicate detection queued" in page.content()
    pair = wait_until(lambda: DuplicateCandidate.objects.first(), what="a duplicate candidate")
    assert {pair.account_a_id, pair.account_b_id} == {survivor.pk, loser.pk}
    page.goto(f"{base}/duplicates/")
    rows = page.locator("#rows tbody tr")
    assert rows.count() == 1
    assert survivor.enterprise_id in rows.first.inner_text()
    assert loser.enterprise_id in rows.first.inner_text()
    screenshot(page, "steward-duplicates")

    # ... opens the side-by-side comparison
    rows.first.get_by_role("link", name=f"DUP-{pair.pk}").click()
    page.wait_for_url(f"**/duplicates/{pair.pk}/")
    comparison = page.locator("table.side-by-side").inner_text()
    assert "Acme Systems Ltd" in comparison and "ACME Systems Limited" in comparison
    screenshot(page, "duplicate-comparison")

    # ... merges the loser into the survivor, keeping the loser's phone and the survivor's name
    page.get_by_role(
        "link", name=f"Merge {loser.enterprise_id} into {survivor.enterprise_id}…"
    ).click()
    page.wait_for_url("**/merges/new/**")
    assert "Merge " + loser.enterprise_id + " into " + survivor.enterprise_id in (
        page.locator("h1").inner_text()
    )
    assert any(loser_orders[0] in text for text in page.locator("ul.moves").all_inner_texts())
    page.locator("input[name=keep_legal_name][value=survivor]").check()
    page.locator("input[name=keep_phone][value=loser]").check()
    screenshot(page, "steward-merge-preview")
    page.get_by_label("Reason").fill("same tax id, same postcode")
    page.get_by_role("button", name="Merge", exact=True).click()
    page.wait_for_url("**/merges/*/")

    # then: the merge is done and the loser's orders sit under the survivor
    merge = MergeRecord.objects.get()
    assert merge.state == MergeState.MERGED
    assert (merge.survivor_id, merge.loser_id) == (survivor.pk, loser.pk)
    assert "Merged" in page.locator("h1").inner_text()
    fresh_survivor = Account.objects.get(pk=survivor.pk)
    assert fresh_survivor.legal_name == "Acme Systems Ltd"
    assert fresh_survivor.phone == "+44 20 7946 0018"
    assert Account.objects.get(pk=loser.pk).status == AccountStatus.MERGED
    assert DuplicateCandidate.objects.get(pk=pair.pk).status == CandidateStatus.MERGED
    assert sorted(
        Order.objects.filter(account=survivor).values_list("enterprise_id", flat=True)
    ) == sorted(survivor_orders + loser_orders)
    page.get_by_role("link", name=survivor.enterprise_id).first.click()
    page.wait_for_url(f"**/accounts/{survivor.enterprise_id}/")
    records = page.locator("ul.moves").all_inner_texts()
    assert all(any(number in text for text in records) for number in loser_orders)
    screenshot(page, "account-merged")

    # when: the steward unmerges from the merge log
    page.goto(f"{base}/merges/")
    page.get_by_role("link", name=f"MRG-{merge.pk}").click()
    page.wait_for_url(f"**/merges/{merge.pk}/")
    unmerge = page.locator("form[data-action=unmerge]")
    unmerge.get_by_label("Reason").fill("different companies after all")
    unmerge.get_by_role("button", name="Unmerge: move what it moved back").click()
    page.wait_for_url(f"**/merges/{merge.pk}/")

    # then: the orders are back with the loser, which is active again
    assert MergeRecord.objects.get(pk=merge.pk).state == MergeState.UNMERGED
    assert "Unmerged" in page.locator("h1").inner_text()
    assert (
        sorted(Order.objects.filter(account=loser).values_list("enterprise_id", flat=True))
        == loser_orders
    )
    assert (
        sorted(Order.objects.filter(account=survivor).values_list("enterprise_id", flat=True))
        == survivor_orders
    )
    assert Account.objects.get(pk=loser.pk).status == AccountStatus.ACTIVE
    page.goto(f"{base}/accounts/{loser.enterprise_id}/")
    records = page.locator("ul.moves").all_inner_texts()
    assert all(any(number in text for text in records) for number in loser_orders)
