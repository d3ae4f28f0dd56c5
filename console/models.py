"""What the console keeps per person: their notification preference and the notices sent
(one row per person and thing, so nothing is announced twice)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class NotificationPreference(models.Model):
    """Whether a person wants e-mail about SLA breaches and approvals waiting for them
    (absent: yes)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.user} e-mail {'on' if self.email else 'off'}"


class Notice(models.Model):
    """One thing announced to one person (``key``: "sla:EXC-7", "approval:RPL-3"), sent in a
    batch with the others found in the same run."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=40)
    text = models.CharField(max_length=300)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="notice_once")]

    def __str__(self) -> str:
        return f"{self.key} to {self.user}"


class DisplayPreference(models.Model):
    """How a person wants times shown: a time zone name (IANA, "Europe/Paris"); absent or
    blank, the site's display zone (``TIME_ZONE``). Times are stored in UTC either way."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="display_preference"
    )
    time_zone = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.user} times in {self.time_zone or 'the site zone'}"


class SavedView(models.Model):
    """A list with its filters, saved by a person under a name ("EU orders stuck in
    provisioning"): the list's path and its query string, opened again in one click."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=60)
    path = models.CharField(max_length=200)
    query = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["user", "path", "name"], name="saved_view_once")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.path})"

    @property
    def url(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


class ChatNotice(models.Model):
    """One thing announced to the team chat (``key`` as for ``Notice``), once."""

    key = models.CharField(max_length=40, unique=True)
    text = models.CharField(max_length=300)
    path = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key} to the chat"
