"""Writes to master data: legal entities, accounts, the crosswalk, products and mappings."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from masterdata.identity import account_keys
from masterdata.models import Account, ExternalId, LegalEntity, Product, ProductMapping
from q2c.audit import Actor, audit_context
from q2c.errors import reason_require
from q2c.identifiers import PREFIXES, identifier_allocate
from q2c.records import SYSTEMS, CanonicalRecord, record_full_clean


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
    """Create a customer. ``details``: domain, tax_id, address fields, phone, email."""
    reason_require(reason)
    allowed = {
        "domain", "tax_id", "address_line1", "address_line2", "city", "postcode", "region",
        "phone", "email",
    }  # fmt: skip
    unknown = set(details) - allowed
    if unknown:
        raise ValidationError(f"unknown account fields: {', '.join(sorted(unknown))}")
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
    different record is refused, since the crosswalk is unique per system and object type.
    """
    reason_require(reason)
    if system not in SYSTEMS:
        raise ValidationError(f"unknown system {system!r}")
    if not external_id:
        raise ValidationError("an external id cannot be empty")
    content_type = ContentType.objects.get_for_model(record)
    existing = ExternalId.objects.filter(
        system=system, object_type=object_type, external_id=external_id
    ).first()
    if existing is not None:
        if existing.content_type_id == content_type.pk and existing.object_id == record.pk:
            return existing
        raise ValidationError(
            f"{system} {object_type} {external_id} already belongs to {existing.enterprise_id}"
        )
    try:
        with transaction.atomic(), audit_context(actor=actor, reason=reason):
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
    reason_require(reason)
    if system not in SYSTEMS:
        raise ValidationError(f"unknown system {system!r}")
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        mapping = ProductMapping(
            product=product, system=system, external_id=external_id, external_kind=external_kind
        )
        record_full_clean(mapping)
        mapping.save()
    return mapping
