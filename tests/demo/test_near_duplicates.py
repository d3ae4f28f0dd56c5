"""After seed_demo the stewards' queue holds the demo's near-duplicates, with evidence."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from masterdata.models import CandidateStatus, DuplicateCandidate


@pytest.mark.django_db
def test_seed_demo_leaves_the_near_duplicates_as_candidates_with_evidence(settings):
    # given
    settings.TANDEM_DEMO_MODE = True
    out = StringIO()
    # when
    call_command("seed_demo", stdout=out)
    # then
    pairs = sorted(
        (c.account_a.legal_name, c.account_b.legal_name, c.status)
        for c in DuplicateCandidate.objects.select_related("account_a", "account_b")
    )
    assert pairs == [
        ("Alder & Finch Ltd", "Alder and Finch Limited", CandidateStatus.OPEN),
        ("Brightwater Analytics, Inc.", "BRIGHTWATER ANALYTICS INC", CandidateStatus.OPEN),
        ("Nordlicht Maschinenbau GmbH", "Nordlicht Maschinenbau", CandidateStatus.OPEN),
    ]
    brightwater = DuplicateCandidate.objects.get(account_a__legal_name__startswith="Bright")
    assert {k: v["result"] for k, v in brightwater.evidence.items()} == {
        "name": "same", "tax_id": "same", "phone": "same", "address": "same",
        "domain": "same", "country": "same",
    }  # fmt: skip
