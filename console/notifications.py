"""SLA breaches and approvals waiting, announced by e-mail (Django's mail framework): each
person gets one message per run listing what is new for them, never the same thing twice
(``Notice`` rows, unique per person and thing), and nothing when they turned e-mail off.
With ``TANDEM_CHAT_WEBHOOK_URL`` set, the same things also go to the team chat, one message
per run, each thing once (``ChatNotice``); a message the chat refused is sent again by the
next run."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse

from console.models import ChatNotice, Notice, NotificationPreference
from console.selectors.my_work import approvals_waiting, merges_waiting
from core.roles import role_of
from exceptions.models import OPEN_STATES, OperationalException, Replay, ReplayState
from masterdata.models import MergeRecord, MergeState

logger = logging.getLogger(__name__)

TEAMS = {"sales_ops", "finance_ops", "data_steward", "integration_support"}


def notification_preference_set(*, user: Any, email: bool) -> NotificationPreference:
    """Turn a person's e-mail notices on or off. One transaction. Refuses nothing."""
    with transaction.atomic():
        preference, _ = NotificationPreference.objects.update_or_create(
            user=user, defaults={"email": email}
        )
    return preference


def _wanted(user: Any, now: dt.datetime) -> list[tuple[str, str, str]]:
    """(key, text, path) of what ``user`` should hear about now."""
    items: list[tuple[str, str, str]] = []
    role = role_of(user)
    if role in TEAMS and user.has_perm("exceptions.view_operationalexception"):
        for exc in OperationalException.objects.filter(
            state__in=OPEN_STATES, owner_team=role, sla_due_at__lt=now
        ).order_by("sla_due_at", "pk")[:50]:
            items.append(
                (f"sla:EXC-{exc.pk}", f"EXC-{exc.pk} is overdue: {exc.message[:150]}",
                 reverse("exception-detail", args=[exc.pk]))
            )  # fmt: skip
    for replay in approvals_waiting(user=user)[:50]:
        items.append(
            (f"approval:RPL-{replay.pk}",
             f"RPL-{replay.pk} waits for your approval (asked by {replay.requested_by})",
             reverse("replay-detail", args=[replay.pk]))
        )  # fmt: skip
    for merge in merges_waiting(user=user)[:50]:
        items.append(
            (f"approval:MRG-{merge.pk}",
             f"MRG-{merge.pk} waits for your approval (asked by {merge.requested_by})",
             reverse("merge-detail", args=[merge.pk]))
        )  # fmt: skip
    return items


def notifications_send(*, now: dt.datetime) -> int:
    """Find what is new for each active person with a role and an e-mail address, record it
    (each thing once per person) and send each person one message listing it; the mail is
    sent after the rows commit, and a row is marked sent once its message went. A message that
    could not go (the mail server refused or was down) leaves its rows unsent: the next run
    sends them again with whatever is new, as long as they are still waiting, and one person's
    failure never stops the others' messages. Returns how many messages were sent. A person who
    turned e-mail off gets nothing recorded."""
    off = set(NotificationPreference.objects.filter(email=False).values_list("user_id", flat=True))
    sent = failed = 0
    people = get_user_model().objects.filter(is_active=True).exclude(email="").order_by("pk")
    for user in people:
        if user.pk in off or not role_of(user):
            continue
        wanted = _wanted(user, now)
        for key, text, _path in wanted:
            try:
                with transaction.atomic():
                    Notice.objects.create(user=user, key=key, text=text, created_at=now)
            except IntegrityError:  # announced before (sent, or waiting for a retry)
                continue
        paths = {key: path for key, _text, path in wanted}
        due = list(
            Notice.objects.filter(user=user, sent_at__isnull=True, key__in=paths).order_by("pk")
        )
        if not due:
            continue
        try:
            _mail(user, [(notice.text, paths[notice.key]) for notice in due])
        except Exception:  # the mail server's problem: counted, retried by the next run
            failed += 1
            logger.exception("notifications: the message to user %s could not be sent", user.pk)
            continue
        Notice.objects.filter(pk__in=[notice.pk for notice in due]).update(sent_at=now)
        sent += 1
    logger.info("notifications: %d message(s) sent, %d failed", sent, failed)
    if settings.TANDEM_CHAT_WEBHOOK_URL:
        chat_send(now=now)
    return sent


def _team_items(now: dt.datetime) -> list[tuple[str, str, str]]:
    """(key, text, path) of what the teams should hear about: SLA breaches (with the team)
    and approvals waiting for a decision."""
    items: list[tuple[str, str, str]] = []
    for exc in OperationalException.objects.filter(
        state__in=OPEN_STATES, sla_due_at__lt=now
    ).order_by("sla_due_at", "pk")[:50]:
        items.append(
            (f"sla:EXC-{exc.pk}", f"{exc.owner_team}: EXC-{exc.pk} is overdue: {exc.message[:120]}",
             reverse("exception-detail", args=[exc.pk]))
        )  # fmt: skip
    for replay in Replay.objects.filter(state=ReplayState.REQUESTED).order_by("pk")[:50]:
        items.append(
            (f"approval:RPL-{replay.pk}", f"RPL-{replay.pk} waits for a second person's approval",
             reverse("replay-detail", args=[replay.pk]))
        )  # fmt: skip
    for merge in MergeRecord.objects.filter(state=MergeState.REQUESTED).order_by("pk")[:50]:
        items.append(
            (f"approval:MRG-{merge.pk}", f"MRG-{merge.pk} waits for a second person's approval",
             reverse("merge-detail", args=[merge.pk]))
        )  # fmt: skip
    return items


def chat_send(*, now: dt.datetime) -> bool:
    """Post what is new for the teams to the chat webhook, one message; each thing once
    (recorded first, marked sent when the chat answered 2xx). Returns whether a message went.
    The chat being down is logged (without its URL) and retried by the next run."""
    wanted = _team_items(now)
    for key, text, path in wanted:
        try:
            with transaction.atomic():
                ChatNotice.objects.create(key=key, text=text, path=path, created_at=now)
        except IntegrityError:  # announced before
            continue
    still = {key for key, _text, _path in wanted}
    due = list(ChatNotice.objects.filter(sent_at__isnull=True, key__in=still).order_by("pk"))
    if not due:
        return False
    lines = [f"• {n.text} {settings.TANDEM_BASE_URL}{n.path}" for n in due]
    text = "\n".join([f"Tandem: {len(due)} thing{'s' if len(due) != 1 else ''} waiting", *lines])
    try:
        response = requests.post(
            settings.TANDEM_CHAT_WEBHOOK_URL, json={"text": text}, timeout=(3.05, 10)
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        logger.warning(
            "notifications: the chat refused the message (%s)", status or type(exc).__name__
        )
        return False
    ChatNotice.objects.filter(pk__in=[n.pk for n in due]).update(sent_at=now)
    return True


def _mail(user: Any, items: list[tuple[str, str]]) -> None:
    lines = [f"- {text}\n  {settings.TANDEM_BASE_URL}{path}" for text, path in items]
    send_mail(
        subject=f"Tandem: {len(items)} thing{'s' if len(items) != 1 else ''} waiting for you",
        message="\n".join(
            [
                "New since the last message:",
                "",
                *lines,
                "",
                "Turn these e-mails off on your home page.",
            ]
        ),
        from_email=None,
        recipient_list=[user.email],
    )
