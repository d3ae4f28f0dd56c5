from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from q2c.models import Invoice, Order
from q2c.state_diagrams import DOC_PATH, edges, state_diagrams_markdown


def test_committed_state_machine_doc_matches_the_models():
    # given
    committed = (Path(settings.BASE_DIR) / DOC_PATH).read_text(encoding="utf-8")
    # when
    generated = state_diagrams_markdown()
    # then
    assert committed == generated


def test_order_arrows_carry_conditions_and_permissions():
    # when
    markdown = state_diagrams_markdown([Order])
    # then
    lines = markdown.splitlines()
    assert (
        "    received --> validated: validate<br/>[needs at least one line]"
        "<br/>[needs an account and a legal entity]"
    ) in lines
    assert "    received --> on_hold: hold<br/>requires q2c.hold_order" in lines
    assert "    on_hold --> provisioning: release<br/>requires q2c.hold_order" in lines
    assert [line for line in lines if line.endswith("--> [*]")] == [
        "    fulfilled --> [*]",
        "    rejected --> [*]",
        "    cancelled --> [*]",
    ]


def test_returned_targets_become_one_arrow_per_allowed_state():
    # when
    found = [(e.source, e.target) for e in edges(Invoice) if e.name == "apply_payment"]
    # then
    assert found == [
        ("posted", "partially_paid"),
        ("posted", "paid"),
        ("partially_paid", "partially_paid"),
        ("partially_paid", "paid"),
    ]


def test_check_passes_on_the_committed_doc():
    # given
    out = StringIO()
    # when
    call_command("state_diagrams", "--check", stdout=out)
    # then
    assert out.getvalue() == f"{DOC_PATH} is up to date.\n"


def test_check_fails_on_a_stale_doc(tmp_path, settings):
    # given
    settings.BASE_DIR = tmp_path
    (tmp_path / "docs").mkdir()
    stale = state_diagrams_markdown().replace("requires q2c.hold_order", "anyone", 1)
    (tmp_path / DOC_PATH).write_text(stale, encoding="utf-8")
    # when
    with pytest.raises(CommandError) as failed:
        call_command("state_diagrams", "--check", stdout=StringIO())
    # then
    assert str(failed.value) == (
        f"{DOC_PATH} is stale; run: python manage.py state_diagrams --write"
    )
    assert failed.value.returncode == 1
    assert (tmp_path / DOC_PATH).read_text(encoding="utf-8") == stale
