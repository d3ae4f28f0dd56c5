"""Master data: legal entities, accounts (customers), the external-id crosswalk, products."""

from __future__ import annotations

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django_fsm import FSMField, transition

from q2c.audit import AuditedHistory
from q2c.money import CurrencyField, currency_check
from q2c.records import (
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
