"""Reads of master data."""

from __future__ import annotations

from dataclasses import dataclass
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


def account_records() -> list[tuple[Any, str, str]]:
    """Every active account as a matching record, with its enterprise id and legal name
    (duplicate detection, and matching a file against the accounts)."""
    from masterdata.matching.pipeline import paused_gc

    with paused_gc():
        return _account_records()


def _account_records() -> list[tuple[Any, str, str]]:
    from masterdata.duplicates import account_row

    values = Account.objects.filter(status=AccountStatus.ACTIVE).values_list(
        "pk", "enterprise_id", "country", "legal_name", "name_key", "tax_id_key", "domain_key",
        "address_line1", "address_line2", "city", "postcode", "phone", "email",
    )  # fmt: skip
    return [
        (
            account_row(
                pk=pk,
                country=country,
                legal_name=legal_name,
                name_key=name,
                tax_id_key=tax,
                domain_key=domain,
                address_line1=line1,
                address_line2=line2,
                city=city,
                postcode=postcode,
                phone=phone,
                email=email,
            ),
            enterprise_id,
            legal_name,
        )
        for (
            pk,
            enterprise_id,
            country,
            legal_name,
            name,
            tax,
            domain,
            line1,
            line2,
            city,
            postcode,
            phone,
            email,
        ) in values.iterator(chunk_size=5000)
    ]


@dataclass(frozen=True)
class CandidateGroup:
    """Accounts that detection found to be one organisation, pair by pair, and that hold
    together (``masterdata.matching.clusters``)."""

    cluster: int
    accounts: list[Account]
    candidates: list[DuplicateCandidate]  # the group's open pairs, best first
    sites: list[DuplicateCandidate]  # open pairs flagged as sites, touching the group

    @property
    def best(self) -> Decimal:
        return max((candidate.score for candidate in self.candidates), default=Decimal(0))


def candidate_groups(*, q: str = "", cluster: int | None = None) -> list[CandidateGroup]:
    """Open groups of two or more active accounts, largest first, then best scored."""
    qs = candidates_queue(status=CandidateStatus.OPEN).filter(cluster__isnull=False)
    if cluster is not None:
        qs = qs.filter(cluster=cluster)
    by_cluster: dict[int, list[DuplicateCandidate]] = {}
    for candidate in qs:
        assert candidate.cluster is not None
        by_cluster.setdefault(candidate.cluster, []).append(candidate)
    members: dict[int, dict[int, Account]] = {}
    for key, candidates in by_cluster.items():
        accounts = members.setdefault(key, {})
        for candidate in candidates:
            accounts[candidate.account_a_id] = candidate.account_a
            accounts[candidate.account_b_id] = candidate.account_b
    sites: dict[int, list[DuplicateCandidate]] = {}
    if members:
        owner = {pk: key for key, accounts in members.items() for pk in accounts}
        flagged = (
            candidates_queue(status=CandidateStatus.OPEN)
            .filter(pattern="sites")
            .filter(Q(account_a__in=list(owner)) | Q(account_b__in=list(owner)))
        )
        for candidate in flagged:
            found = owner.get(candidate.account_a_id, owner.get(candidate.account_b_id))
            if found is not None:
                sites.setdefault(found, []).append(candidate)
    groups = [
        CandidateGroup(
            cluster=key,
            accounts=sorted(members[key].values(), key=lambda account: account.pk),
            candidates=by_cluster[key],
            sites=sites.get(key, []),
        )
        for key in by_cluster
    ]
    if q:
        needle = q.lower()
        groups = [
            group for group in groups
            if any(needle in account.legal_name.lower() or needle == account.enterprise_id.lower()
                   for account in group.accounts)
        ]  # fmt: skip
    groups.sort(key=lambda group: (-len(group.accounts), -group.best, group.cluster))
    return groups
