"""E-mail notices: SLA breaches of my team and approvals waiting for me, one message per
person per run, never the same thing twice, none for who turned them off."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from console.models import ChatNotice, Notice, NotificationPreference
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


class Chat:
    """A team chat's incoming webhook on loopback: records what it is sent, answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        self.status = 200
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                chat.received.append(json.loads(body))
                self.send_response(chat.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/team"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def chat(settings) -> Iterator[Chat]:  # type: ignore[no-untyped-def]
    chat = Chat()
    settings.TANDEM_CHAT_WEBHOOK_URL = chat.url
    yield chat
    chat.server.shutdown()
    chat.server.server_close()


@pytest.mark.django_db
def test_breaches_and_approvals_go_to_the_team_chat_once_and_again_after_a_refusal(
    chat, make_user, test_flow
):
    # given: a breach, and the chat answering 503 on the first run
    late = overdue(raise_exception(category=Category.VALIDATION))
    make_user("sam", role="sales_ops", email="sam@example.com")
    chat.status = 503
    # when: three runs; the chat is back for the second
    notifications_send(now=timezone.now())
    chat.status = 200
    notifications_send(now=timezone.now())
    notifications_send(now=timezone.now())
    # then: the refused message was sent again, then nothing more (each thing once)
    assert len(chat.received) == 2
    text = str(chat.received[1]["text"])
    assert text.startswith("Tandem: 1 thing waiting")
    assert f"sales_ops: EXC-{late.pk} is overdue" in text
    assert f"/exceptions/{late.pk}/" in text
    assert ChatNotice.objects.get().sent_at is not None
    # and: the e-mail went its own way, once
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_no_chat_webhook_no_chat_notices(settings, make_user, test_flow):
    settings.TANDEM_CHAT_WEBHOOK_URL = ""
    overdue(raise_exception(category=Category.VALIDATION))
    notifications_send(now=timezone.now())
    assert not ChatNotice.objects.exists()
