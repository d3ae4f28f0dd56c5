"""Headers of every answer: a strict Content-Security-Policy, and no-store for signed-in pages;
the templates keep no inline script or style the policy would block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from core.web import CONTENT_SECURITY_POLICY


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["home", "exception-list", "audit-history", "dead-letter-list"])
def test_a_signed_in_page_is_never_stored_and_carries_the_policy(client, make_user, page):
    # given
    client.force_login(make_user("ivan", role="integration_support"))
    # when
    response = client.get(reverse(page))
    # then
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives


@pytest.mark.django_db
def test_the_sign_in_page_carries_the_policy(client):
    # when
    response = client.get("/login/")
    # then
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_no_template_has_an_inline_script_or_style():
    # given
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.I)
    templates = sorted(Path(settings.BASE_DIR, "templates").rglob("*.html"))
    # when
    found = [str(path) for path in templates if inline.search(path.read_text())]
    # then
    assert templates
    assert found == []
