"""The few tables every app stands on."""

from __future__ import annotations

from django.db import models


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
