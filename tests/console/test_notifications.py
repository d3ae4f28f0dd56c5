"""E-mail notices: SLA breaches of my team and approvals waiting for me, one message per
person per run, never the same thing twice, none for who turned them off."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from console.models import Notice, NotificationPreference
from console.notifications import notifications_send
from core.audit import Actor
from core.problems import Category
from exceptions import services
from exceptions.models import OperationalException, ReplayKind
from tests.exceptions.helpers import raise_exception


def overdue(exc: OperationalException) -> OperationalException:
    OperationalException.objects.filter(pk=exc.pk).update(  # test setup: due long ago
        sla_due_at=timezone.now() - dt.timedelta(hours=1)
    )
    return exc


@pytest.mark.django_db
def test_breaches_and_approvals_are_sent_batched_per_person_and_only_once(make_user, test_flow):
    # given: a sales ops breach, and a replay finance ops must decide
    late = overdue(raise_exception(category=Category.VALIDATION))
    raise_exception(category=Category.VALIDATION)  # not overdue yet
    failed = raise_exception(step="create_subscription", category=Category.DOWNSTREAM_API)
    sam = make_user("sam", role="sales_ops", email="sam@example.com")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=failed.step_run, actor=Actor.person(sam), reason="again"
    )
    make_user("fiona", role="finance_ops", email="fiona@example.com")
    make_user("nobody", email="nobody@example.com")  # no role: nothing
    # when: two runs of the job
    first = notifications_send(now=timezone.now())
    second = notifications_send(now=timezone.now())
    # then: one message each for sam and fiona, listing their own things, not repeated
    assert (first, second) == (2, 0)
    by_person = {m.to[0]: m for m in mail.outbox}
    assert sorted(by_person) == ["fiona@example.com", "sam@example.com"]
    assert by_person["sam@example.com"].subject == "Tandem: 1 thing waiting for you"
    assert f"EXC-{late.pk} is overdue" in by_person["sam@example.com"].body
    assert f"/exceptions/{late.pk}/" in by_person["sam@example.com"].body
    assert f"RPL-{replay.pk} waits for your approval" in by_person["fiona@example.com"].body
    notices = {(n.key, n.sent_at is not None) for n in Notice.objects.all()}
    assert notices == {(f"sla:EXC-{late.pk}", True), (f"approval:RPL-{replay.pk}", True)}


@pytest.mark.django_db
def test_a_person_who_turned_notices_off_gets_none(client, make_user, test_flow):
    # given
    overdue(raise_exception(category=Category.VALIDATION))
    sam = make_user("sam", role="sales_ops", email="sam@example.com")
    client.force_login(sam)
    # when: sam turns e-mail off on the home page, then the job runs
    response = client.post(reverse("notification-preference"), {"email": "0"})
    sent = notifications_send(now=timezone.now())
    # then
    assert response.status_code == 302
    assert NotificationPreference.objects.get(user=sam).email is False
    assert (sent, len(mail.outbox), Notice.objects.count()) == (0, 0, 0)
    assert "E-mail notices are <strong>off</strong>" in client.get(reverse("home")).content.decode()


class RefusingBackend:
    """A mail server that is down: every message is refused (the true edge of the system)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def send_messages(self, messages: list[object]) -> int:
        raise ConnectionRefusedError("mail server down")


@pytest.mark.django_db
def test_a_message_that_could_not_go_is_sent_by_the_next_run(make_user, settings, test_flow):
    # given: a breach for sam, and the mail server down during the first run
    late = overdue(raise_exception(category=Category.VALIDATION))
    make_user("sam", role="sales_ops", email="sam@example.com")
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    # when: the first run fails to send, the server comes back, the job runs again
    first = notifications_send(now=timezone.now())
    unsent = Notice.objects.filter(sent_at__isnull=True).count()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    second = notifications_send(now=timezone.now())
    # then: nothing was lost: the second run sends what the first could not, once
    assert (first, unsent, second) == (0, 1, 1)
    assert len(mail.outbox) == 1
    assert f"EXC-{late.pk} is overdue" in mail.outbox[0].body
    assert Notice.objects.get().sent_at is not None
    assert notifications_send(now=timezone.now()) == 0
