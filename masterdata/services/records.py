"""Writes to master data records: legal entities, accounts, the crosswalk, products and
their mappings. Each runs in one transaction with the actor and the reason, and refuses with
``core.errors.Refused`` (nothing changed): a blank reason (``ReasonRequired``), a record that
does not validate (``INVALID``, the model's messages)."""

from __future__ import annotations

from typing import Protocol

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from core.audit import Actor, audit_context
from core.errors import Refused, reason_require
from core.identifiers import PREFIXES, identifier_allocate
from core.records import SYSTEMS, CanonicalRecord, record_full_clean
from masterdata.identity import account_keys
from masterdata.locks import lock_account_survivor, lock_accounts
from masterdata.models import (
    Account,
    AccountStatus,
    ExternalId,
    LegalEntity,
    Product,
    ProductMapping,
)
from masterdata.selectors import account_by_enterprise_id


class AccountObserver(Protocol):
    """What other apps do when a live account's details change (address, tax id), registered
    at start-up (``AppConfig.ready``) so master data imports none of them. Called inside the
    changing transaction, after the account is saved with its history row."""

    def account_changed(self, *, account: Account, fields: list[str]) -> None: ...


_account_observers: list[AccountObserver] = []


def account_observer_register(observer: AccountObserver) -> None:
    """Called once at start-up by each app that follows account changes (twice is harmless)."""
    if observer not in _account_observers:
        _account_observers.append(observer)


def _account_changed(account: Account, fields: list[str]) -> None:
    for observer in _account_observers:
        observer.account_changed(account=account, fields=fields)


def steward_require(actor: Actor) -> None:
    """Deciding about duplicates and merges is the data stewards' job (and admins'): raise
    ``PermissionDenied`` unless ``actor`` holds ``masterdata.merge_account``."""
    if not actor.has_perm("masterdata.merge_account"):
        raise PermissionDenied("merging accounts needs the masterdata.merge_account permission")


def legal_entity_create(
    *,
    code: str,
    name: str,
    country: str,
    currency: str,
    erp_subsidiary: str = "",
    tax_registration: str = "",
    actor: Actor,
    reason: str,
) -> LegalEntity:
    """Create a selling company with a new enterprise id. Refuses a blank reason and an
    entity that does not validate (``INVALID``). Returns the saved entity."""
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        entity = LegalEntity(
            enterprise_id=identifier_allocate(prefix=PREFIXES["legal_entity"]),
            code=code,
            name=name,
            country=country,
            currency=currency,
            erp_subsidiary=erp_subsidiary,
            tax_registration=tax_registration,
        )
        record_full_clean(entity, exclude=["enterprise_id"])
        entity.save()
    return entity


def account_create(
    *,
    legal_name: str,
    country: str,
    currency: str,
    legal_entity: LegalEntity | None = None,
    actor: Actor,
    reason: str,
    **details: str,
) -> Account:
    """Create a customer with a new enterprise id and its match keys; ``details``: domain,
    tax_id, address fields, phone, email. Refuses a blank reason, an unknown detail and an
    account that does not validate (``INVALID``). Returns the saved account."""
    reason_require(reason)
    allowed = {
        "domain", "tax_id", "address_line1", "address_line2", "city", "postcode", "region",
        "phone", "email",
    }  # fmt: skip
    unknown = set(details) - allowed
    if unknown:
        raise Refused(
            f"unknown account fields: {', '.join(sorted(unknown))}", kind=Refused.Kind.INVALID
        )
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        account = Account(
            enterprise_id=identifier_allocate(prefix=PREFIXES["account"]),
            legal_name=legal_name,
            country=country,
            currency=currency,
            legal_entity=legal_entity,
            **details,
            **account_keys(
                legal_name=legal_name,
                country=country,
                tax_id=details.get("tax_id", ""),
                domain=details.get("domain", ""),
                email=details.get("email", ""),
            ),
        )
        record_full_clean(account, exclude=["enterprise_id"])
        account.save()
    return account


def account_update_address(
    *,
    account: Account,
    address_line1: str,
    city: str,
    postcode: str,
    country: str,
    actor: Actor,
    reason: str,
) -> Account:
    """Correct a live account's address (and country, which its match keys depend on).

    One history row with the actor and reason; the same address again writes nothing.
    The account is locked for the change. Refuses a blank reason, a merged account
    (``STATE``: its survivor holds the address now) and an address that does not validate
    (``INVALID``). Returns the account as saved.
    """
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_accounts([account.pk])[account.pk]
        if locked.status != AccountStatus.ACTIVE:
            raise Refused(
                f"{locked} is {locked.status}; correct its survivor instead",
                kind=Refused.Kind.STATE,
            )
        wanted = {
            "address_line1": address_line1,
            "city": city,
            "postcode": postcode,
            "country": country,
        }
        if all(getattr(locked, name) == value for name, value in wanted.items()):
            return locked
        for name, value in wanted.items():
            setattr(locked, name, value)
        keys = account_keys(
            legal_name=locked.legal_name,
            country=locked.country,
            tax_id=locked.tax_id,
            domain=locked.domain,
            email=locked.email,
        )
        for name, value in keys.items():
            setattr(locked, name, value)
        record_full_clean(locked)
        locked.save()
        _account_changed(locked, list(wanted))
    return locked


def account_update_tax_id(*, account: Account, tax_id: str, actor: Actor, reason: str) -> Account:
    """Correct a live account's tax id (its match keys follow). One history row with the
    actor and reason; the same tax id again writes nothing. The account is locked for the
    change. Refuses a blank reason, a merged account (``STATE``) and a tax id that does not
    validate (``INVALID``). Returns the account as saved."""
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_accounts([account.pk])[account.pk]
        if locked.status != AccountStatus.ACTIVE:
            raise Refused(
                f"{locked} is {locked.status}; correct its survivor instead",
                kind=Refused.Kind.STATE,
            )
        tax_id = tax_id.strip()
        if locked.tax_id == tax_id:
            return locked
        locked.tax_id = tax_id
        keys = account_keys(
            legal_name=locked.legal_name,
            country=locked.country,
            tax_id=locked.tax_id,
            domain=locked.domain,
            email=locked.email,
        )
        for name, value in keys.items():
            setattr(locked, name, value)
        record_full_clean(locked)
        locked.save()
        _account_changed(locked, ["tax_id"])
    return locked


def external_id_link(
    *,
    record: CanonicalRecord,
    system: str,
    object_type: str,
    external_id: str,
    actor: Actor,
    reason: str,
) -> ExternalId:
    """Record that ``system`` knows ``record`` as ``external_id`` (idempotent).

    Linking the same id to the same record again returns the existing row; linking it to a
    different record is refused (``DUPLICATE``), since the crosswalk is unique per system and
    object type. Also refuses a blank reason, an unknown system and an empty id
    (``INVALID``). An account's link waits for a merge of it in progress (its survivor's lock)
    and goes to the survivor; a lost race with an identical link returns the winner's row.
    """
    reason_require(reason)
    if system not in SYSTEMS:
        raise Refused(f"unknown system {system!r}", kind=Refused.Kind.INVALID)
    if not external_id:
        raise Refused("an external id cannot be empty", kind=Refused.Kind.INVALID)
    if isinstance(record, Account):
        record = account_by_enterprise_id(enterprise_id=record.enterprise_id) or record
    content_type = ContentType.objects.get_for_model(record)
    existing = ExternalId.objects.filter(
        system=system, object_type=object_type, external_id=external_id
    ).first()
    if existing is not None:
        if existing.content_type_id == content_type.pk and existing.object_id == record.pk:
            return existing
        raise Refused(
            f"{system} {object_type} {external_id} already belongs to {existing.enterprise_id}",
            kind=Refused.Kind.DUPLICATE,
        )
    try:
        with transaction.atomic(), audit_context(actor=actor, reason=reason):
            if isinstance(record, Account):
                # A merge in progress finishes first; its loser's new ids go to the survivor.
                record = lock_account_survivor(record.pk)
            return ExternalId.objects.create(
                system=system,
                object_type=object_type,
                external_id=external_id,
                content_type=content_type,
                object_id=record.pk,
                enterprise_id=record.enterprise_id,
            )
    except IntegrityError:
        # Lost a race with an identical link: the row now exists; re-check it is ours.
        return external_id_link(
            record=record,
            system=system,
            object_type=object_type,
            external_id=external_id,
            actor=actor,
            reason=reason,
        )


def product_create(
    *, sku: str, name: str, kind: str, billing_period: str = "", actor: Actor, reason: str
) -> Product:
    """Add a product to the catalog with a new enterprise id. Refuses a blank reason and a
    product that does not validate (``INVALID``, e.g. a SKU taken). Returns it saved."""
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        product = Product(
            enterprise_id=identifier_allocate(prefix=PREFIXES["product"]),
            sku=sku,
            name=name,
            kind=kind,
            billing_period=billing_period,
        )
        record_full_clean(product, exclude=["enterprise_id"])
        product.save()
    return product


def product_map(
    *,
    product: Product,
    system: str,
    external_id: str,
    external_kind: str = "",
    actor: Actor,
    reason: str,
) -> ProductMapping:
    """Map ``product`` to its item, plan or product in ``system``. Refuses a blank reason, an
    unknown system and a mapping that does not validate (``INVALID``). Returns it saved."""
    reason_require(reason)
    if system not in SYSTEMS:
        raise Refused(f"unknown system {system!r}", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        mapping = ProductMapping(
            product=product, system=system, external_id=external_id, external_kind=external_kind
        )
        record_full_clean(mapping)
        mapping.save()
    return mapping
