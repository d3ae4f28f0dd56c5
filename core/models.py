"""The few tables every app stands on."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class IdentifierCounter(models.Model):
    prefix = models.CharField(max_length=8, primary_key=True)
    last_value = models.BigIntegerField(default=0)

    class Meta:
        db_table = "q2c_identifiercounter"  # made by q2c's first migration
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_value__gte=0), name="identifiercounter_non_negative"
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}: {self.last_value}"


class ApiToken(models.Model):
    """A user's API token, stored as its SHA-256 digest: the token itself is shown once, when
    it is issued (``core.tokens.api_token_issue``), and never kept. One per user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token"
    )
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token")
    prefix = models.CharField(
        max_length=8, help_text="The token's first characters, to recognise it"
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
