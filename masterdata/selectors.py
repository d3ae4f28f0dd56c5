"""Reads of master data."""

from __future__ import annotations

from django.db.models import Model

from masterdata.models import Account, AccountAlias, ExternalId


def external_id_resolve(*, system: str, object_type: str, external_id: str) -> Model | None:
    """The canonical record a system's id names, or None if the crosswalk has no entry."""
    link = (
        ExternalId.objects.select_related("content_type")
        .filter(system=system, object_type=object_type, external_id=external_id)
        .first()
    )
    if link is None:
        return None
    return link.content_type.get_object_for_this_type(pk=link.object_id)


def account_by_enterprise_id(*, enterprise_id: str) -> Account | None:
    """The live account an id names, following merges and aliases to the survivor."""
    account = Account.objects.filter(enterprise_id=enterprise_id).first()
    if account is None:
        alias = AccountAlias.objects.select_related("account").filter(alias=enterprise_id).first()
        account = alias.account if alias else None
    seen: set[int] = set()
    while account is not None and account.merged_into_id is not None and account.pk not in seen:
        seen.add(account.pk)
        account = account.merged_into
    return account
