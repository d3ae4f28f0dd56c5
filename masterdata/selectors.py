"""Reads of master data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q, QuerySet

from masterdata.models import (
    Account,
    AccountAlias,
    AccountStatus,
    CandidateStatus,
    DuplicateCandidate,
    ExternalId,
    MergeRecord,
)


def external_id_resolve(*, system: str, object_type: str, external_id: str) -> Model | None:
    """The canonical record a system's id names, or None if the crosswalk has no entry."""
    link = (
        ExternalId.objects.select_related("content_type")
        .filter(system=system, object_type=object_type, external_id=external_id)
        .first()
    )
    if link is None:
        return None
    record = link.content_type.get_object_for_this_type(pk=link.object_id)
    if isinstance(record, Account) and record.merged_into_id is not None:
        # The crosswalk is re-pointed by a merge; an entry still naming a merged account
        # (written before the merge committed) resolves to its survivor all the same.
        return account_by_enterprise_id(enterprise_id=record.enterprise_id)
    return record


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


def candidates_queue(
    *, status: str = "open", q: str = "", min_score: Decimal | None = None, country: str = ""
) -> QuerySet[DuplicateCandidate]:
    """Candidate pairs for the stewards' queue, best first; open pairs only between accounts
    that are still active."""
    qs = DuplicateCandidate.objects.select_related("account_a", "account_b")
    if status:
        qs = qs.filter(status=status)
    if status == CandidateStatus.OPEN:
        qs = qs.filter(
            account_a__status=AccountStatus.ACTIVE, account_b__status=AccountStatus.ACTIVE
        )
    if min_score is not None:
        qs = qs.filter(score__gte=min_score)
    if country:
        qs = qs.filter(Q(account_a__country=country) | Q(account_b__country=country))
    if q:
        qs = qs.filter(
            Q(account_a__legal_name__icontains=q)
            | Q(account_b__legal_name__icontains=q)
            | Q(account_a__enterprise_id=q)
            | Q(account_b__enterprise_id=q)
        )
    return qs.order_by("-score", "pk")


def merge_log() -> QuerySet[MergeRecord]:
    """Every merge, newest request first, with its accounts and the people who requested,
    approved and undid it (one query per page)."""
    return MergeRecord.objects.select_related(
        "survivor", "loser", "requested_by", "approved_by", "unmerged_by"
    ).order_by("-requested_at", "-pk")


def account_references(*, account: Account) -> list[tuple[str, list[Model]]]:
    """Every record pointing at ``account`` (what a merge of it would move), by kind."""
    out: list[tuple[str, list[Model]]] = []
    for model, field in account_reference_fields():
        rows = list(model._default_manager.filter(**{field: account.pk}).order_by("pk"))
        if rows:
            out.append((str(model._meta.verbose_name_plural), rows))
    links: list[Model] = list(
        ExternalId.objects.filter(
            content_type=ContentType.objects.get_for_model(Account), object_id=account.pk
        ).order_by("system", "pk")
    )
    if links:
        out.append(("crosswalk entries", links))
    return out


def account_crosswalk(*, account: Account) -> list[ExternalId]:
    """The account's ids in every system, by system, object type and id."""
    return list(
        ExternalId.objects.filter(
            content_type=ContentType.objects.get_for_model(Account), object_id=account.pk
        ).order_by("system", "object_type", "external_id")
    )


def account_merges(*, account: Account) -> list[MergeRecord]:
    """The merges the account took part in, as survivor or loser, newest first."""
    return list(
        merge_log().filter(Q(survivor=account) | Q(loser=account)).order_by("-requested_at")
    )


def account_reference_fields() -> list[tuple[type[Model], str]]:
    """Every foreign key to Account outside master data's own bookkeeping, found from the
    model registry so a new record type with an account is re-pointed too."""
    own = {Account, AccountAlias, DuplicateCandidate, MergeRecord}
    found: list[tuple[type[Model], str]] = []
    for relation in Account._meta.related_objects:
        model: Any = relation.related_model
        if model in own or relation.many_to_many or not hasattr(model, "_meta"):
            continue
        if getattr(model._meta, "auto_created", False) or model.__name__.startswith("Historical"):
            continue
        found.append((model, relation.field.name))
    return sorted(found, key=lambda item: (item[0]._meta.label, item[1]))


def records_attached_since(*, merge: MergeRecord) -> list[Model]:
    """Records on the survivor created after the merge: an unmerge leaves them there unless
    the steward picks them."""
    if merge.merged_at is None:
        return []
    found: list[Model] = []
    for model, field in account_reference_fields():
        if not any(f.name == "created_at" for f in model._meta.get_fields()):
            continue
        found.extend(
            model._default_manager.filter(
                **{field: merge.survivor_id, "created_at__gt": merge.merged_at}
            ).order_by("pk")
        )
    return found
