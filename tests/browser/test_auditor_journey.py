"""The auditor's job in a real browser: from a contract's timeline to the audit trail filtered
to that contract, who changed what (field-level diffs with actor and reason), the contract as
of a past moment, and the CSV export of the same rows.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

import pytest

from core.audit import Actor
from q2c import services
from q2c.models import Contract, ContractState
from tests import factories
from tests.browser.conftest import browser_login

pytestmark = pytest.mark.integration


def test_an_auditor_reconstructs_who_changed_what_on_a_contract_and_exports_it(
    live_server: Any, page: Any, make_user: Any, screenshot: Any
) -> None:
    # given: a contract created by the worker, activated and then renewed by finance ops
    contract = factories.contract()
    fiona = Actor.person(make_user("fiona", role="finance_ops"))
    services.contract_activate(contract=contract, actor=fiona, reason="customer accepted")
    services.contract_renew(
        contract=contract, new_end_date=dt.date(2027, 12, 31), lines=[factories.line()],
        actor=fiona, reason="renewed for 2027 on the customer's PO 4411",
    )  # fmt: skip
    make_user("audrey", role="auditor")
    base = live_server.url
    browser_login(page, base, "audrey", "pw")

    # when: the auditor finds the contract and opens its timeline, then its audit trail
    page.goto(f"{base}/contracts/")
    row = page.locator("#rows tbody tr", has_text=contract.enterprise_id)
    row.get_by_role("link", name="timeline").click()
    page.wait_for_url(f"**/contracts/{contract.enterprise_id}/timeline/")
    page.get_by_role("link", name=f"who changed what on {contract.enterprise_id}").click()
    page.wait_for_url("**/audit/?model=q2c.contract**")

    # then: every change of this contract, newest first, with who, why and the field diff
    rows = page.locator("#rows table.audit tbody tr")
    texts = rows.all_inner_texts()
    assert len(texts) == contract.history.count() == 3
    assert all(contract.enterprise_id in text for text in texts)
    renewed, activated, first = texts
    assert "fiona" in renewed and "renewed for 2027 on the customer's PO 4411" in renewed
    assert "end date 2026-12-31 → 2027-12-31" in renewed  # the field by its name
    assert "fiona" in activated and "customer accepted" in activated
    assert "pending_activation" in activated and "active" in activated
    assert "worker" in first and "test setup" in first
    screenshot(page, "audit-contract")

    # when: the auditor opens the contract as of its creation
    rows.nth(2).get_by_role("link", name="as of").click()
    page.wait_for_url("**/audit/as-of/**")
    # then: the state and the term it had then, and who made it so
    summary = page.locator("p", has_text="last changed").inner_text()
    assert summary.startswith(f"Contract {contract.enterprise_id} as of ")
    assert summary.endswith("by worker (test setup). Its whole history")
    cells = [r.locator("td").all_inner_texts() for r in page.locator("table.list tbody tr").all()]
    values = {name: value for name, value in cells}
    assert values["state"] == ContractState.PENDING_ACTIVATION
    assert values["end_date"] == "2026-12-31"
    screenshot(page, "audit-as-of")

    # when: back on the trail, the auditor downloads the CSV export of the same filter
    page.go_back()
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("tandem-audit-")
    with open(download.path(), newline="") as handle:
        exported = list(csv.reader(handle))

    # then: a header and one row per change, newest first, with actor, reason and diff
    assert exported[0][-1] == "changes"
    body = exported[1:]
    assert [(r[1], r[2], r[6], r[7]) for r in body] == [
        ("q2c.contract", contract.enterprise_id, "fiona",
         "renewed for 2027 on the customer's PO 4411"),
        ("q2c.contract", contract.enterprise_id, "fiona", "customer accepted"),
        ("q2c.contract", contract.enterprise_id, "worker", "test setup"),
    ]  # fmt: skip
    assert "end_date: 2026-12-31 -> 2027-12-31" in body[0][8]
    assert Contract.objects.get(pk=contract.pk).end_date == dt.date(2027, 12, 31)
