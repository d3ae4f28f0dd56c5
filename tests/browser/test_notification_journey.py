"""Sales ops on day one: an overdue exception of the team arrives by e-mail with its link,
the link opens it, and the e-mails are turned off from the home page."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from console.notifications import notifications_send
from core.problems import Category
from exceptions.models import OperationalException
from orchestration.workflows import engine
from tests.browser.conftest import browser_login
from tests.exceptions.helpers import FLOW, KIND, planned, raise_exception

pytestmark = pytest.mark.integration


@pytest.fixture
def test_flow() -> Iterator[None]:
    engine.workflow_register(FLOW)
    planned.clear()
    yield
    planned.clear()
    engine.REGISTRY.pop(KIND, None)


def test_an_overdue_exception_is_mailed_opened_from_the_mail_and_notices_turned_off(
    live_server: Any, page: Any, make_user: Any, settings: Any, test_flow: Any
) -> None:
    # given: sales ops with an e-mail address, and an exception of their team past its SLA
    settings.TANDEM_BASE_URL = live_server.url
    exc = raise_exception(category=Category.VALIDATION)
    OperationalException.objects.filter(pk=exc.pk).update(  # test setup: due an hour ago
        sla_due_at=timezone.now() - dt.timedelta(hours=1)
    )
    make_user("sam", role="sales_ops", email="sam@example.com")
    browser_login(page, live_server.url, "sam", "pw")
    # when: the notices go out
    assert notifications_send(now=timezone.now()) == 1
    # then: one message, whose link opens the exception
    (message,) = mail.outbox
    assert message.to == ["sam@example.com"]
    link = re.search(r"http://\S+/exceptions/\d+/", message.body)
    assert link is not None
    page.goto(link[0])
    expect(page.locator("h1")).to_contain_text(f"EXC-{exc.pk}")
    # when: sam turns the e-mails off on the home page, and another breach comes
    page.goto(f"{live_server.url}/")
    page.get_by_role("button", name="Turn them off").click()
    expect(page.locator("form.notices")).to_contain_text("E-mail notices are off")
    later = raise_exception(category=Category.VALIDATION)
    OperationalException.objects.filter(pk=later.pk).update(
        sla_due_at=timezone.now() - dt.timedelta(minutes=5)
    )
    # then: nothing more is sent
    assert notifications_send(now=timezone.now()) == 0
    assert len(mail.outbox) == 1
