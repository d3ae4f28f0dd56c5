"""Master data: legal entities, accounts (customers), the external-id crosswalk, products."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django_fsm import FSMField, transition

from core.audit import AuditedHistory
from core.money import CurrencyField, currency_check
from core.records import (
    SYSTEM_CHOICES,
    BillingPeriod,
    CanonicalRecord,
    ConcurrentTransitions,
    LineKind,
)


class LegalEntity(CanonicalRecord):
    """The selling company: which books an order lands in."""

    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2)
    currency = CurrencyField()
    erp_subsidiary = models.CharField(max_length=50, blank=True)
    tax_registration = models.CharField(max_length=50, blank=True)

    history = AuditedHistory()

    class Meta:
        verbose_name_plural = "legal entities"
        ordering = ["code"]
        constraints = [
            currency_check("currency", "legalentity_currency_iso"),
            models.CheckConstraint(
                condition=models.Q(country__regex=r"^[A-Z]{2}$"), name="legalentity_country_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    MERGED = "merged", "Merged"


class Account(ConcurrentTransitions, CanonicalRecord):
    """A customer. A merged account points at its survivor and keeps its ids as aliases."""

    legal_name = models.CharField(max_length=255, db_index=True)
    domain = models.CharField(max_length=255, blank=True, db_index=True)
    tax_id = models.CharField(max_length=50, blank=True, db_index=True)
    country = models.CharField(max_length=2)
    currency = CurrencyField()
    legal_entity = models.ForeignKey(
        LegalEntity, on_delete=models.PROTECT, related_name="accounts", null=True, blank=True
    )
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=100, blank=True)
    postcode = models.CharField(max_length=20, blank=True)
    region = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    email = models.EmailField(blank=True)
    # Normalized match keys (masterdata.identity), kept by the services that write accounts.
    tax_id_key = models.CharField(max_length=50, blank=True, db_index=True, editable=False)
    domain_key = models.CharField(max_length=255, blank=True, db_index=True, editable=False)
    name_key = models.CharField(max_length=255, blank=True, db_index=True, editable=False)
    status = FSMField(default=AccountStatus.ACTIVE, choices=AccountStatus.choices, protected=True)
    merged_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="merged_accounts"
    )

    history = AuditedHistory()

    class Meta:
        ordering = ["enterprise_id"]
        constraints = [
            currency_check("currency", "account_currency_iso"),
            models.CheckConstraint(
                condition=models.Q(country__regex=r"^[A-Z]{2}$"), name="account_country_iso"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status=AccountStatus.MERGED, merged_into__isnull=False)
                    | models.Q(status=AccountStatus.ACTIVE, merged_into__isnull=True)
                ),
                name="account_merged_has_survivor",
            ),
        ]
        indexes = [models.Index(fields=["country", "legal_name"])]
        permissions = [("merge_account", "Can merge and unmerge accounts")]

    def __str__(self) -> str:
        return f"{self.enterprise_id} {self.legal_name}"

    @transition(field=status, source=AccountStatus.ACTIVE, target=AccountStatus.MERGED)
    def mark_merged(self, *, survivor: Account) -> None:
        self.merged_into = survivor

    @transition(field=status, source=AccountStatus.MERGED, target=AccountStatus.ACTIVE)
    def mark_unmerged(self) -> None:
        self.merged_into = None


class AccountAlias(models.Model):
    """An enterprise id that no longer names its own account (it was merged away)."""

    alias = models.CharField(max_length=20, unique=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="aliases")
    created_at = models.DateTimeField(auto_now_add=True)

    history = AuditedHistory()

    class Meta:
        verbose_name_plural = "account aliases"

    def __str__(self) -> str:
        return f"{self.alias} → {self.account_id}"


class ExternalId(models.Model):
    """The crosswalk: one system's id for one canonical record (unique per system and type)."""

    system = models.CharField(max_length=20, choices=SYSTEM_CHOICES)
    object_type = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.PositiveBigIntegerField()
    record = GenericForeignKey("content_type", "object_id")
    enterprise_id = models.CharField(max_length=20, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = AuditedHistory()

    class Meta:
        verbose_name = "external id"
        constraints = [
            models.UniqueConstraint(
                fields=["system", "object_type", "external_id"], name="externalid_unique"
            )
        ]
        indexes = [
            models.Index(fields=["content_type", "object_id"]),
            models.Index(fields=["external_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.system}:{self.object_type}:{self.external_id} → {self.enterprise_id}"


class Product(CanonicalRecord):
    """A canonical product; each system's own product, plan or item is a ProductMapping."""

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=LineKind.choices)
    billing_period = models.CharField(
        max_length=10, choices=BillingPeriod.choices, blank=True, default=BillingPeriod.NONE
    )
    is_active = models.BooleanField(default=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind=LineKind.RECURRING) & ~models.Q(billing_period="")
                    | ~models.Q(kind=LineKind.RECURRING)
                ),
                name="product_recurring_has_period",
            )
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class ProductMapping(models.Model):
    """How one system names a canonical product. An unmapped product is an exception."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="mappings")
    system = models.CharField(max_length=20, choices=SYSTEM_CHOICES)
    external_id = models.CharField(max_length=255)
    external_kind = models.CharField(max_length=40, blank=True, help_text="item, plan, price…")

    history = AuditedHistory()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "system"], name="productmapping_one_per_system"
            ),
            models.UniqueConstraint(
                fields=["system", "external_id"], name="productmapping_ext_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}@{self.system}={self.external_id}"


class CandidateStatus(models.TextChoices):
    OPEN = "open", "Open"
    MERGED = "merged", "Merged"
    DISMISSED = "dismissed", "Dismissed"


class CandidatePattern(models.TextChoices):
    DUPLICATE = "", "Duplicate"
    SITES = "sites", "Sites of one organisation"


class DuplicateCandidate(models.Model):
    """Two active accounts that look like one customer, with the evidence for it.

    ``fingerprint`` hashes the compared fields of both accounts when the pair was scored: a
    dismissed pair is only offered again once either account's fields change.
    """

    account_a = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    account_b = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    score = models.DecimalField(max_digits=4, decimal_places=3)
    evidence = models.JSONField(default=dict)
    # The match weight in bits (the prior's and every field's, as the evidence lists them).
    match_weight = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    # "sites": the names agree but the addresses and phones are another site's; not merged
    # with the rest of its group by default.
    pattern = models.CharField(max_length=10, blank=True, choices=CandidatePattern.choices)
    # The group the pair belongs to (its smallest account pk), when the group holds together.
    cluster = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(
        max_length=10, choices=CandidateStatus.choices, default=CandidateStatus.OPEN
    )
    detected_at = models.DateTimeField(db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    decision_reason = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-score", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_a", "account_b"], name="candidate_one_per_pair"
            ),
            models.CheckConstraint(
                condition=models.Q(account_a__lt=models.F("account_b")),
                name="candidate_pair_ordered",
            ),
        ]
        indexes = [models.Index(fields=["status", "score"])]

    def __str__(self) -> str:
        return f"DUP-{self.pk}"


class MergeState(models.TextChoices):
    REQUESTED = "requested", "Awaiting approval"
    REJECTED = "rejected", "Rejected"
    MERGED = "merged", "Merged"
    UNMERGED = "unmerged", "Unmerged"


class PushState(models.TextChoices):
    NOT_NEEDED = "not_needed", "Nothing to push"
    PENDING = "pending", "Queued"
    DONE = "done", "Pushed"
    FAILED = "failed", "Failed"


class MergeRecord(ConcurrentTransitions, models.Model):
    """One merge of ``loser`` into ``survivor``: what was chosen, what moved, who approved."""

    survivor = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="merges_won")
    loser = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="merges_lost")
    candidate = models.ForeignKey(
        DuplicateCandidate, on_delete=models.SET_NULL, null=True, blank=True, related_name="merges"
    )
    state = FSMField(default=MergeState.REQUESTED, choices=MergeState.choices, protected=True)
    # {field: "survivor" | "loser"}: whose value the survivor keeps.
    field_choices = models.JSONField(default=dict)
    # The survivor's values before the merge, for the fields the merge changed.
    survivor_before = models.JSONField(default=dict, blank=True)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    merged_at = models.DateTimeField(null=True, blank=True)
    unmerged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    unmerged_at = models.DateTimeField(null=True, blank=True)
    unmerge_reason = models.TextField(blank=True)
    push_state = models.CharField(
        max_length=12, choices=PushState.choices, default=PushState.NOT_NEEDED
    )
    push_attempts = models.PositiveIntegerField(default=0)
    push_error = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-requested_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(survivor=models.F("loser")), name="merge_two_accounts"
            ),
            models.CheckConstraint(
                condition=models.Q(approved_by__isnull=True)
                | ~models.Q(approved_by=models.F("requested_by")),
                name="merge_approver_is_not_requester",
            ),
        ]

    def __str__(self) -> str:
        return f"MRG-{self.pk}"

    @transition(field=state, source=MergeState.REQUESTED, target=MergeState.MERGED)
    def complete(self, *, approved_by: Any, at: dt.datetime) -> None:
        self.approved_by = approved_by
        self.merged_at = at

    @transition(field=state, source=MergeState.REQUESTED, target=MergeState.REJECTED)
    def reject(self, *, by: Any, at: dt.datetime) -> None:
        self.approved_by = by
        self.unmerge_reason = f"rejected at {at}"

    @transition(field=state, source=MergeState.MERGED, target=MergeState.UNMERGED)
    def undo(self, *, by: Any, at: dt.datetime, reason_text: str) -> None:
        self.unmerged_by = by
        self.unmerged_at = at
        self.unmerge_reason = reason_text


class MergedReference(models.Model):
    """One reference a merge re-pointed from the loser to the survivor (or back)."""

    merge = models.ForeignKey(MergeRecord, on_delete=models.PROTECT, related_name="references")
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.PositiveBigIntegerField()
    record = GenericForeignKey("content_type", "object_id")
    label = models.CharField(max_length=60)  # the record's business id, for the screens
    field = models.CharField(max_length=40)
    before = models.JSONField()
    after = models.JSONField()
    moved_back = models.BooleanField(default=False)

    class Meta:
        ordering = ["content_type_id", "object_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merge", "content_type", "object_id", "field"], name="mergedref_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label}.{self.field}"
