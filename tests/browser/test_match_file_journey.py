"""The data steward's identity work in a real browser: match a legacy export before a
migration, then review a group of duplicate accounts and merge it as one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.audit import Actor
from masterdata.models import Account, AccountStatus
from masterdata.services import duplicates as md
from tests import factories
from tests.browser.conftest import browser_login

pytestmark = pytest.mark.integration

LEGACY = """Id,Site name,Address,Zip,Phone
L-1,Northside Youth Centers - Riverdale Campus,4410 N Clark St.,60640,(773) 555-0100
L-2,RIVERDALE CAMPUS,4410 N CLARK,,773-555-0100
L-3,Hillcrest Association - Riverdale Learning Ctr,2210-16 West Ogden Avenue,60608,
L-4,Riverdale Learning Center,2210 W Ogden,60608,(312) 555-0199
L-5,Acme Plumbing,12 High Street,60601,(312) 555-0111
"""


def test_a_steward_matches_a_legacy_export_and_merges_a_group(
    live_server: Any, page: Any, make_user: Any, screenshot: Any, tmp_path: Path
) -> None:
    # given: a legacy export, and three records of one customer already in Tandem
    export = tmp_path / "legacy.csv"
    export.write_text(LEGACY, encoding="utf-8")
    kestrel = [
        factories.account(legal_name="Kestrel Data Systems Ltd", tax_id="GB123456789",
                          address_line1="12 High Street", postcode="LS1 4AP",
                          phone="+44 113 496 0000"),
        factories.account(legal_name="KESTREL DATA SYSTEMS LIMITED", tax_id="GB 123 456 789",
                          address_line1="12, High St.", postcode="LS14AP"),
        factories.account(legal_name="Kestrel Data Sys", address_line1="12 High St",
                          postcode="LS1 4AP", phone="0113 496 0000"),
    ]  # fmt: skip
    md.duplicates_detect(actor=Actor.system("scheduler"))
    make_user("stella", role="data_steward")
    base = live_server.url
    browser_login(page, base, "stella", "pw")

    # when: the steward uploads the export and maps its columns
    page.goto(f"{base}/duplicates/")
    page.get_by_role("link", name="Match a file").click()
    page.get_by_label("CSV file").set_input_files(str(export))
    page.get_by_label("Id column").fill("Id")
    page.get_by_label("Country of rows without one").fill("US")
    page.get_by_label("legal_name").fill("Site name")
    page.get_by_label("address_line1").fill("Address")
    page.get_by_label("postcode").fill("Zip")
    page.get_by_label("phone").fill("Phone")
    page.get_by_role("button", name="Show the matches").click()

    # then: the two sites listed twice are paired, each in its own cluster
    rows = [row.split("\t") for row in page.locator("table.pairs tbody tr").all_inner_texts()]
    assert [(row[0], row[2], row[4], row[5]) for row in rows] == [
        ("L-1", "L-2", "1.000", "1"), ("L-3", "L-4", "0.998", "2"),
    ]  # fmt: skip
    screenshot(page, "match-file", full_page=True)

    # when: the steward opens the group detection found and merges it into the first account
    page.goto(f"{base}/duplicates/groups/")
    page.get_by_role("link", name=f"GRP-{kestrel[0].pk}").click()
    screenshot(page, "duplicate-group", full_page=True)
    page.locator("table.candidates a").first.click()
    evidence = page.locator("table.evidence tbody td:first-child").all_inner_texts()
    assert evidence == ["name", "tax_id", "phone", "address", "domain", "country"]
    assert "Match weight (probability 1.000)" in page.locator("table.evidence").inner_text()
    screenshot(page, "duplicate-evidence", full_page=True)
    page.go_back()
    page.get_by_label("Reason").fill("one customer keyed by three systems")
    page.get_by_role("button", name="Merge the ticked accounts").click()

    # then
    page.wait_for_url("**/duplicates/groups/")
    assert "merged into" in page.content()
    assert sorted(
        Account.objects.filter(pk__in=[a.pk for a in kestrel]).values_list("pk", "status")
    ) == [
        (kestrel[0].pk, AccountStatus.ACTIVE),
        (kestrel[1].pk, AccountStatus.MERGED),
        (kestrel[2].pk, AccountStatus.MERGED),
    ]
