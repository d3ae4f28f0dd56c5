"""Writes to master data: legal entities, accounts, the crosswalk, products and mappings,
duplicate candidates, merges and unmerges."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from masterdata.duplicates import AccountRow, duplicates_find, pair_fingerprint
from masterdata.identity import account_keys
from masterdata.locks import lock_account_survivor, lock_accounts
from masterdata.matching.pipeline import paused_gc
from masterdata.models import (
    Account,
    AccountAlias,
    AccountStatus,
    CandidatePattern,
    CandidateStatus,
    DuplicateCandidate,
    ExternalId,
    LegalEntity,
    MergedReference,
    MergeRecord,
    MergeState,
    Product,
    ProductMapping,
    PushState,
)
from masterdata.selectors import (
    account_by_enterprise_id,
    account_records,
    account_reference_fields,
)
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
    A merged account is refused: its survivor holds the address now.
    """
    reason_require(reason)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_accounts([account.pk])[account.pk]
        if locked.status != AccountStatus.ACTIVE:
            raise ValidationError(f"{locked} is {locked.status}; correct its survivor instead")
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
    different record is refused, since the crosswalk is unique per system and object type.
    """
    reason_require(reason)
    if system not in SYSTEMS:
        raise ValidationError(f"unknown system {system!r}")
    if not external_id:
        raise ValidationError("an external id cannot be empty")
    if isinstance(record, Account):
        record = account_by_enterprise_id(enterprise_id=record.enterprise_id) or record
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


# --- Duplicate detection ----------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionSummary:
    accounts: int
    comparisons: int
    pairs_scored: int
    found: int
    created: int
    reopened: int
    updated: int
    seconds: float
    timings: dict[str, float]
    sites: int = 0  # of the candidates found, flagged as sites of one organisation
    clusters: int = 0  # groups of two or more accounts that hold together
    by_pass: dict[str, int] | None = None  # pairs each blocking pass added
    reduction_ratio: float = 1.0
    model: dict[str, Any] | None = None  # the learned prior, m and u, EM iterations


def _active_rows() -> list[AccountRow]:
    return [row for row, _, _ in account_records()]


def duplicates_detect(*, actor: Actor, threshold: float | None = None) -> DetectionSummary:
    """Score every active account against its likely twins and store the candidate pairs.

    A new pair is stored open; an open pair gets its new score and evidence; a dismissed pair
    comes back (open) only when either account's compared fields changed since it was
    dismissed (its fingerprint differs); a merged pair is left alone.
    """
    started = time.perf_counter()
    cutoff = settings.TANDEM_DUPLICATE_THRESHOLD if threshold is None else threshold
    rows = _active_rows()
    read = time.perf_counter()
    by_pk = {row.pk: row for row in rows}
    result = duplicates_find(rows, threshold=cutoff)
    found = time.perf_counter()
    existing = {
        (candidate.account_a_id, candidate.account_b_id): candidate
        for candidate in DuplicateCandidate.objects.filter(
            account_a__status=AccountStatus.ACTIVE, account_b__status=AccountStatus.ACTIVE
        )
    }
    now = timezone.now()
    reason = "duplicate detection"
    new: list[DuplicateCandidate] = []
    changed: list[DuplicateCandidate] = []
    reopened = 0
    for pair in result.pairs:
        fingerprint = pair_fingerprint(by_pk[pair.a], by_pk[pair.b])
        score = Decimal(str(pair.score)).quantize(Decimal("0.001"))
        weight = Decimal(str(pair.match_weight)).quantize(Decimal("0.01"))
        pattern = CandidatePattern.SITES if pair.sites else CandidatePattern.DUPLICATE
        candidate = existing.get((pair.a, pair.b))
        if candidate is None:
            new.append(
                DuplicateCandidate(
                    account_a_id=pair.a, account_b_id=pair.b, score=score,
                    evidence=pair.evidence, fingerprint=fingerprint, detected_at=now,
                    match_weight=weight, pattern=pattern, cluster=pair.cluster,
                )
            )  # fmt: skip
            continue
        if candidate.status == CandidateStatus.MERGED:
            continue
        if candidate.status == CandidateStatus.DISMISSED:
            if candidate.fingerprint == fingerprint:
                continue  # dismissed, and nothing compared has changed since
            candidate.status = CandidateStatus.OPEN
            candidate.decided_at = None
            candidate.decided_by = None
            candidate.decision_reason = ""
            reopened += 1
        elif (
            candidate.fingerprint == fingerprint
            and candidate.score == score
            and (candidate.match_weight, candidate.pattern, candidate.cluster)
            == (weight, pattern, pair.cluster)
        ):
            continue
        candidate.score = score
        candidate.match_weight = weight
        candidate.pattern = pattern
        candidate.cluster = pair.cluster
        candidate.evidence = pair.evidence
        candidate.fingerprint = fingerprint
        candidate.detected_at = now
        changed.append(candidate)
    with transaction.atomic(), audit_context(actor=actor, reason=reason), paused_gc():
        if new:
            bulk_create_with_history(
                new, DuplicateCandidate, batch_size=2000, default_user=actor.user,
                default_change_reason=reason,
            )  # fmt: skip
        if changed:
            bulk_update_with_history(
                changed, DuplicateCandidate,
                ["score", "evidence", "fingerprint", "detected_at", "status", "decided_at",
                 "decided_by", "decision_reason", "match_weight", "pattern", "cluster"],
                batch_size=2000, default_user=actor.user, default_change_reason=reason,
            )  # fmt: skip
    return DetectionSummary(
        accounts=result.accounts,
        comparisons=result.blocked_comparisons,
        pairs_scored=result.pairs_scored,
        found=len(result.pairs),
        created=len(new),
        reopened=reopened,
        updated=len(changed) - reopened,
        seconds=round(time.perf_counter() - started, 2),
        timings={
            "read": round(read - started, 2),
            **{key: round(value, 2) for key, value in result.timings.items()},
            "store": round(time.perf_counter() - found, 2),
        },
        sites=sum(pair.sites for pair in result.pairs),
        clusters=len(result.clusters),
        by_pass=result.by_pass,
        reduction_ratio=result.reduction_ratio,
        model=None
        if result.model is None
        else {
            "prior": result.model.prior,
            "iterations": result.model.iterations,
            "converged": result.model.converged,
            "table": result.model.table(),
        },
    )


def candidate_dismiss(
    *, candidate: DuplicateCandidate, actor: Actor, reason: str
) -> DuplicateCandidate:
    """Not one customer: the pair stays out of the queue until either account changes."""
    reason_require(reason)
    _require_steward(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = DuplicateCandidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.status != CandidateStatus.OPEN:
            raise ValidationError(f"{locked} is {locked.status}; only an open pair is dismissed")
        locked.status = CandidateStatus.DISMISSED
        locked.decided_at = timezone.now()
        locked.decided_by = actor.user
        locked.decision_reason = reason
        locked.save()
    return locked


# --- Merge and unmerge ------------------------------------------------------------------------

# The account fields a steward chooses between, field by field, when merging.
MERGE_FIELDS = (
    "legal_name", "domain", "tax_id", "address_line1", "address_line2", "city", "postcode",
    "region", "country", "phone", "email",
)  # fmt: skip
ACCOUNT_CT_LABEL = "masterdata.account"


def _require_steward(actor: Actor) -> None:
    if not actor.has_perm("masterdata.merge_account"):
        raise PermissionDenied("merging accounts needs the masterdata.merge_account permission")


def _account_systems(account: Account) -> set[str]:
    content_type = ContentType.objects.get_for_model(Account)
    return set(
        ExternalId.objects.filter(content_type=content_type, object_id=account.pk).values_list(
            "system", flat=True
        )
    )


@dataclass(frozen=True)
class FieldDefault:
    field: str
    survivor_value: str
    loser_value: str
    keep: str  # "survivor" | "loser"
    rule: str


def survivorship_defaults(*, survivor: Account, loser: Account) -> list[FieldDefault]:
    """Whose value each field keeps by default: the account known to the most trusted system
    for that field (``TANDEM_SURVIVORSHIP``), else the most recently updated non-empty value.
    An empty value never wins over a filled one."""
    rules: dict[str, list[str]] = settings.TANDEM_SURVIVORSHIP
    systems = {"survivor": _account_systems(survivor), "loser": _account_systems(loser)}
    out = []
    for name in MERGE_FIELDS:
        values = {"survivor": str(getattr(survivor, name)), "loser": str(getattr(loser, name))}
        if values["survivor"] == values["loser"]:
            out.append(FieldDefault(name, values["survivor"], values["loser"], "survivor", "same"))
            continue
        filled = [side for side in ("survivor", "loser") if values[side]]
        if len(filled) == 1:
            out.append(FieldDefault(name, values["survivor"], values["loser"], filled[0],
                                    "the only non-empty value"))  # fmt: skip
            continue
        keep, rule = "", ""
        for system in rules.get(name, rules.get("*", [])):
            holders = [side for side in ("survivor", "loser") if system in systems[side]]
            if len(holders) == 1:
                keep, rule = holders[0], f"most trusted system for {name}: {system}"
                break
        if not keep:
            newer = "loser" if loser.updated_at > survivor.updated_at else "survivor"
            keep, rule = newer, "most recent value"
        out.append(FieldDefault(name, values["survivor"], values["loser"], keep, rule))
    return out


def _label(record: Model) -> str:
    return str(getattr(record, "enterprise_id", "") or f"{record._meta.label}#{record.pk}")


def merge_request(
    *,
    survivor: Account,
    loser: Account,
    field_choices: dict[str, str] | None = None,
    candidate: DuplicateCandidate | None = None,
    actor: Actor,
    reason: str,
) -> MergeRecord:
    """Ask to merge ``loser`` into ``survivor``. Without maker-checker
    (``TANDEM_MERGE_REQUIRES_APPROVAL`` off) the merge runs at once; with it, it waits for
    another steward's ``merge_approve``. ``field_choices`` ({field: "survivor"|"loser"})
    override the survivorship defaults."""
    reason_require(reason)
    _require_steward(actor)
    if survivor.pk == loser.pk:
        raise ValidationError("an account cannot be merged into itself")
    defaults = {
        item.field: item.keep for item in survivorship_defaults(survivor=survivor, loser=loser)
    }
    choices = {**defaults, **(field_choices or {})}
    bad = {
        name
        for name, side in choices.items()
        if name not in MERGE_FIELDS or side not in ("survivor", "loser")
    }
    if bad:
        raise ValidationError(f"unknown field choices: {', '.join(sorted(bad))}")
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_accounts([survivor.pk, loser.pk])
        for account in locked.values():
            if account.status != AccountStatus.ACTIVE:
                raise ValidationError(
                    f"{account.enterprise_id} is {account.status}; only active accounts merge"
                )
        if (
            MergeRecord.objects.filter(
                state=MergeState.REQUESTED, loser__in=[survivor.pk, loser.pk]
            ).exists()
            or MergeRecord.objects.filter(state=MergeState.REQUESTED, survivor=loser.pk).exists()
        ):
            raise ValidationError("a merge of one of these accounts is already awaiting approval")
        merge = MergeRecord.objects.create(
            survivor=locked[survivor.pk], loser=locked[loser.pk], candidate=candidate,
            field_choices=choices, reason=reason, requested_by=actor.user,
            requested_at=timezone.now(),
        )  # fmt: skip
        if not settings.TANDEM_MERGE_REQUIRES_APPROVAL:
            _merge_execute(merge, approver=None, actor=actor, reason=reason)
    return merge


def merge_approve(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    """The checker runs a requested merge; the requester may not approve their own."""
    reason_require(reason)
    _require_steward(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.requested_by_id == actor.user.pk:
            raise PermissionDenied("a merge must be approved by another steward than its requester")
        _merge_execute(merge, approver=actor.user, actor=actor, reason=reason)
    return merge


def merge_reject(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    reason_require(reason)
    _require_steward(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.requested_by_id == actor.user.pk:
            raise PermissionDenied("a merge must be rejected by another steward than its requester")
        merge.reject(by=actor.user, at=timezone.now())
        merge.save()
    return merge


def _merge_execute(merge: MergeRecord, *, approver: Any, actor: Actor, reason: str) -> None:
    """Inside the caller's transaction: lock both accounts (pk order), move every reference
    from the loser to the survivor with history, record each move, mark the loser merged."""
    locked = lock_accounts([merge.survivor_id, merge.loser_id])
    survivor, loser = locked[merge.survivor_id], locked[merge.loser_id]
    for account in (survivor, loser):
        if account.status != AccountStatus.ACTIVE:
            raise ValidationError(
                f"{account.enterprise_id} is {account.status}; only active accounts merge"
            )
    references: list[MergedReference] = []

    def record(obj: Model, field: str, before: Any, after: Any) -> None:
        references.append(
            MergedReference(
                merge=merge,
                content_type=ContentType.objects.get_for_model(obj),
                object_id=obj.pk,
                label=_label(obj),
                field=field,
                before=before,
                after=after,
            )
        )

    for model, field in account_reference_fields():
        rows = model._default_manager.select_for_update().filter(**{field: loser.pk}).order_by("pk")
        for obj in rows:
            setattr(obj, f"{field}_id", survivor.pk)
            obj.save(update_fields=[field, *(["updated_at"] if hasattr(obj, "updated_at") else [])])
            record(obj, field, loser.pk, survivor.pk)
    account_ct = ContentType.objects.get_for_model(Account)
    crm_links = ExternalId.objects.filter(content_type=account_ct, system="crm")
    push = (
        crm_links.filter(object_id=loser.pk).exists()
        and crm_links.filter(object_id=survivor.pk).exists()
        and _crm_supports_merge()
    )
    for link in (
        ExternalId.objects.select_for_update()
        .filter(content_type=account_ct, object_id=loser.pk)
        .order_by("pk")
    ):
        before = {"object_id": link.object_id, "enterprise_id": link.enterprise_id}
        link.object_id = survivor.pk
        link.enterprise_id = survivor.enterprise_id
        link.save()
        record(
            link,
            "object_id",
            before,
            {"object_id": survivor.pk, "enterprise_id": survivor.enterprise_id},
        )
    # Accounts merged into the loser earlier now point at the survivor: chains stay flat.
    for earlier in Account.objects.select_for_update().filter(merged_into=loser).order_by("pk"):
        earlier.merged_into = survivor
        earlier.save(update_fields=["merged_into", "updated_at"])
        record(earlier, "merged_into", loser.pk, survivor.pk)
    for alias in AccountAlias.objects.select_for_update().filter(account=loser).order_by("pk"):
        alias.account = survivor
        alias.save()
        record(alias, "account", loser.pk, survivor.pk)
    for exc in _exceptions_naming(loser.enterprise_id):
        named = list(exc.context.get("candidates") or [])
        renamed = [survivor.enterprise_id if i == loser.enterprise_id else i for i in named]
        exc.context = {**exc.context, "candidates": renamed}
        exc.save()
        record(exc, "context.candidates", named, renamed)
    alias = AccountAlias.objects.create(alias=loser.enterprise_id, account=survivor)
    record(alias, "created", "", survivor.pk)  # it did not exist before

    before_values: dict[str, str] = {}
    for name, side in merge.field_choices.items():
        if side == "loser" and getattr(survivor, name) != getattr(loser, name):
            before_values[name] = getattr(survivor, name)
            setattr(survivor, name, getattr(loser, name))
    if before_values:
        for key, value in account_keys(
            legal_name=survivor.legal_name, country=survivor.country, tax_id=survivor.tax_id,
            domain=survivor.domain, email=survivor.email,
        ).items():  # fmt: skip
            setattr(survivor, key, value)
        record_full_clean(survivor, exclude=["enterprise_id"])
        survivor.save()
    loser.mark_merged(survivor=survivor)
    loser.save()
    MergedReference.objects.bulk_create(references)

    merge.survivor_before = before_values
    merge.complete(approved_by=approver, at=timezone.now())
    if push:
        merge.push_state = PushState.PENDING
    merge.save()
    if merge.candidate_id is not None:
        candidate = DuplicateCandidate.objects.select_for_update().get(pk=merge.candidate_id)
        candidate.status = CandidateStatus.MERGED
        candidate.decided_at = merge.merged_at
        candidate.decided_by = actor.user
        candidate.decision_reason = reason
        candidate.save()
    if merge.push_state == PushState.PENDING:
        merge_pk = merge.pk
        transaction.on_commit(lambda: _enqueue_push(merge_pk))


def _exceptions_naming(enterprise_id: str) -> list[Any]:
    """Master-data exceptions whose candidate accounts include ``enterprise_id``, locked.

    The JSON list is read in Python (SQLite and PostgreSQL alike; there are few of them) and
    only the matching rows are locked, in pk order."""
    from exceptions.models import Category, OperationalException

    naming = [
        pk
        for pk, context in OperationalException.objects.filter(
            category=Category.MASTER_DATA
        ).values_list("pk", "context")
        if enterprise_id in ((context or {}).get("candidates") or [])
    ]
    return list(
        OperationalException.objects.select_for_update().filter(pk__in=naming).order_by("pk")
    )


def _crm_supports_merge() -> bool:
    from orchestration.connectors.registry import connector_for

    try:
        return callable(getattr(connector_for("crm"), "account_merge", None))
    except Exception:  # a misconfigured connector cannot take the push
        return False


def _enqueue_push(merge_pk: int) -> None:
    from masterdata.tasks import merge_push

    merge_push.delay(merge_pk)


def account_unmerge(
    *,
    merge: MergeRecord,
    actor: Actor,
    reason: str,
    also_move: Iterable[Model] = (),
) -> MergeRecord:
    """Undo a merge: the loser is active again, every reference the merge moved goes back
    (unless it was moved elsewhere since), the survivor gets back the field values the merge
    replaced, the loser's alias is removed. Records attached to the survivor after the merge
    stay there unless named in ``also_move``."""
    reason_require(reason)
    _require_steward(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.state != MergeState.MERGED:
            raise ValidationError(f"{merge} is {merge.state}; only a completed merge is undone")
        locked = lock_accounts([merge.survivor_id, merge.loser_id])
        survivor, loser = locked[merge.survivor_id], locked[merge.loser_id]
        if loser.merged_into_id != survivor.pk:
            raise ValidationError(
                f"{loser.enterprise_id} is no longer merged into {survivor.enterprise_id}"
            )
        loser.mark_unmerged()
        loser.save()
        for ref in merge.references.select_related("content_type").order_by("pk"):
            model = ref.content_type.model_class()
            assert model is not None
            if ref.field == "created":
                for alias in AccountAlias.objects.filter(pk=ref.object_id, account=survivor):
                    alias.delete()
                ref.moved_back = True
                ref.save(update_fields=["moved_back"])
                continue
            obj: Any = model._default_manager.select_for_update().filter(pk=ref.object_id).first()
            if obj is None:
                continue
            if model is ExternalId:
                if obj.object_id != survivor.pk:
                    continue
                obj.object_id = ref.before["object_id"]
                obj.enterprise_id = ref.before["enterprise_id"]
                obj.save()
            elif ref.field == "context.candidates":
                current = list(obj.context.get("candidates") or [])
                if current != ref.after:
                    continue
                obj.context = {**obj.context, "candidates": ref.before}
                obj.save()
            else:
                if getattr(obj, f"{ref.field}_id") != survivor.pk:
                    continue  # moved elsewhere since: leave it where a person put it
                setattr(obj, f"{ref.field}_id", loser.pk)
                obj.save(
                    update_fields=[
                        ref.field,
                        *(["updated_at"] if hasattr(obj, "updated_at") else []),
                    ]
                )
            ref.moved_back = True
            ref.save(update_fields=["moved_back"])
        for obj in also_move:
            field = _account_field(obj)
            locked_obj = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
            if getattr(locked_obj, f"{field}_id") != survivor.pk:
                raise ValidationError(f"{_label(obj)} does not belong to {survivor.enterprise_id}")
            setattr(locked_obj, f"{field}_id", loser.pk)
            locked_obj.save(
                update_fields=[
                    field,
                    *(["updated_at"] if hasattr(locked_obj, "updated_at") else []),
                ]
            )
        if merge.survivor_before:
            for name, value in merge.survivor_before.items():
                setattr(survivor, name, value)
            for key, value in account_keys(
                legal_name=survivor.legal_name, country=survivor.country, tax_id=survivor.tax_id,
                domain=survivor.domain, email=survivor.email,
            ).items():  # fmt: skip
                setattr(survivor, key, value)
            survivor.save()
        merge.undo(by=actor.user, at=timezone.now(), reason_text=reason)
        if merge.push_state == PushState.DONE:
            # CRMs cannot undo a merge through their API: a steward restores it there.
            _crm_restore_exception(merge, actor=actor)
        elif merge.push_state in (PushState.PENDING, PushState.FAILED):
            merge.push_state = PushState.NOT_NEEDED  # never tell the CRM about it now
            merge.push_error = "unmerged before the crm was told"
        merge.save()
        if merge.candidate_id is not None:
            candidate = DuplicateCandidate.objects.select_for_update().get(pk=merge.candidate_id)
            candidate.status = CandidateStatus.DISMISSED  # a wrong merge: not one customer
            candidate.decided_at = merge.unmerged_at
            candidate.decided_by = actor.user
            candidate.decision_reason = f"unmerged: {reason}"
            candidate.save()
    return merge


def _account_field(obj: Model) -> str:
    for model, field in account_reference_fields():
        if isinstance(obj, model):
            return field
    raise ValidationError(f"{_label(obj)} has no account to move")


# --- Pushing a merge to the systems that can merge ---------------------------------------------

MERGE_PUSH_MAX_ATTEMPTS = 5


class MergePushRetry(Exception):
    """The system could not take the merge now; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _moved_crm_links(merge: MergeRecord) -> QuerySet[ExternalId]:
    """The loser's CRM account ids that the merge moved to the survivor."""
    moved = merge.references.filter(
        content_type=ContentType.objects.get_for_model(ExternalId), field="object_id"
    ).values_list("object_id", flat=True)
    return ExternalId.objects.filter(pk__in=moved, system="crm", object_type="account").order_by(
        "pk"
    )


def _merge_crm_ids(merge: MergeRecord) -> tuple[str, list[str]]:
    """(the survivor's CRM id, the CRM ids the loser brought) from what the merge moved."""
    crm = ExternalId.objects.filter(
        content_type=ContentType.objects.get_for_model(Account),
        object_id=merge.survivor_id,
        system="crm",
        object_type="account",
    ).order_by("pk")
    moved = _moved_crm_links(merge).values_list("pk", flat=True)
    losers = list(crm.filter(pk__in=moved).values_list("external_id", flat=True))
    kept = crm.exclude(pk__in=moved).values_list("external_id", flat=True).first()
    return str(kept or ""), [str(value) for value in losers]


def merge_push(*, merge_id: int, final_attempt: bool = False) -> str:
    """Tell the CRM about a merge (outside any transaction). Returns the push state.

    A retryable failure raises ``MergePushRetry`` (the task retries it) until the last
    attempt; a permanent one, or the last attempt, marks the push failed and raises an
    exception on the queue for the data stewards, who can retry it from the merge page.
    """
    from orchestration.connectors.errors import PermanentError, RetryableError
    from orchestration.connectors.registry import connector_for

    merge = MergeRecord.objects.filter(pk=merge_id).first()
    if merge is None or merge.push_state != PushState.PENDING:
        return merge.push_state if merge else ""
    survivor_crm, loser_crms = _merge_crm_ids(merge)
    actor = Actor.system("connector:crm")
    error = ""
    retry_after: int | None = None
    retryable = False
    try:
        crm: Any = connector_for("crm")
        for loser_crm in loser_crms:
            crm.account_merge(
                survivor_id=survivor_crm,
                loser_id=loser_crm,
                idempotency_key=f"merge-{merge.pk}-{loser_crm}",
            )
    except RetryableError as exc:
        error, retry_after, retryable = str(exc), exc.retry_after, True
    except PermanentError as exc:
        error = str(exc)
    with transaction.atomic(), audit_context(actor=actor, reason="merge pushed to crm"):
        locked = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if locked.push_state != PushState.PENDING:
            if not error and locked.state == MergeState.UNMERGED and loser_crms:
                # unmerged while this push was talking to the CRM, which has now merged
                _crm_restore_exception(locked, actor=actor)
            return locked.push_state
        locked.push_attempts += 1
        locked.push_error = error
        if not error:
            locked.push_state = PushState.DONE
        elif not retryable or final_attempt or locked.push_attempts >= MERGE_PUSH_MAX_ATTEMPTS:
            locked.push_state = PushState.FAILED
            _merge_push_exception(locked, error=error, actor=actor)
        locked.save()
    if error and locked.push_state == PushState.PENDING:
        raise MergePushRetry(error, retry_after=retry_after)
    return locked.push_state


def _steward_crm_exception(
    merge: MergeRecord,
    *,
    actor: Actor,
    reason: str,
    error_class: str,
    message: str,
    correlation_id: str,
    **context: Any,
) -> None:
    """An exception on the data stewards' queue about a merge and the CRM."""
    from exceptions.models import CATEGORY_SLA, Category, OperationalException, Severity, Team
    from exceptions.services import exception_fingerprint

    now = timezone.now()
    with audit_context(actor=actor, reason=reason):
        OperationalException.objects.create(
            category=Category.MASTER_DATA,
            severity=Severity.MEDIUM,
            owner_team=Team.DATA_STEWARD,
            system="crm",
            step="merge_push",
            error_class=error_class,
            message=message,
            context={
                "merge": merge.pk,
                "survivor": merge.survivor.enterprise_id,
                "loser": merge.loser.enterprise_id,
                **context,
            },
            fingerprint=exception_fingerprint(
                system="crm", error_class=error_class, step="merge_push"
            ),
            correlation_id=correlation_id,
            created_at=now,
            sla_due_at=now + CATEGORY_SLA[Category.MASTER_DATA],
        )


def _merge_push_exception(merge: MergeRecord, *, error: str, actor: Actor) -> None:
    _steward_crm_exception(
        merge,
        actor=actor,
        reason=f"{merge} could not be pushed to crm",
        error_class="MergePushFailed",
        message=f"{merge}: merging {merge.loser.enterprise_id} into "
        f"{merge.survivor.enterprise_id} in crm failed: {error[:500]}",
        correlation_id=merge.survivor.enterprise_id,
        attempts=merge.push_attempts,
    )


def _crm_restore_exception(merge: MergeRecord, *, actor: Actor) -> None:
    """A merge the CRM carried out was undone in Tandem: the stewards restore it in the CRM."""
    # wherever those ids point now (an unmerge moved them back to the loser)
    loser_crms = [
        str(value) for value in _moved_crm_links(merge).values_list("external_id", flat=True)
    ]
    ids = ", ".join(loser_crms) or "the loser's records"
    _steward_crm_exception(
        merge,
        actor=actor,
        reason=f"{merge} undone after the crm merged",
        error_class="CrmRestoreNeeded",
        message=f"{merge} was undone, but the crm had merged {ids} into the survivor's "
        f"record and cannot undo that through its API: restore {ids} in the crm (e.g. "
        f"from its recycle bin), then resolve this",
        correlation_id=merge.loser.enterprise_id,
        crm_ids=loser_crms,
    )


def merge_push_retry(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    """Queue a failed push again (a steward fixed what made the system refuse it)."""
    reason_require(reason)
    _require_steward(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if locked.push_state != PushState.FAILED:
            raise ValidationError(
                f"{locked}'s push is {locked.push_state}; only a failed one is retried"
            )
        locked.push_state = PushState.PENDING
        locked.push_attempts = 0
        locked.save()
        transaction.on_commit(lambda: _enqueue_push(locked.pk))
    return locked


# --- Groups of duplicates ---------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMergeOutcome:
    merges: list[MergeRecord]  # one per account merged (or requested, with maker-checker)
    refused: list[tuple[str, str]]  # (enterprise id, why) for the accounts left as they were


def group_merge(
    *, survivor: Account, members: Iterable[Account], actor: Actor, reason: str
) -> GroupMergeOutcome:
    """Merge every other account of a group into ``survivor``, one pair at a time through
    ``merge_request`` (each its own transaction, history, survivorship defaults and CRM
    push; the pair's candidate recorded when there is one). An account the merge refuses
    (no longer active, a merge of it awaiting approval) is reported and the rest go on."""
    reason_require(reason)
    _require_steward(actor)
    merges: list[MergeRecord] = []
    refused: list[tuple[str, str]] = []
    for loser in sorted(members, key=lambda account: account.pk):
        if loser.pk == survivor.pk:
            continue
        survivor.refresh_from_db()  # the previous merge may have changed its fields
        first, second = sorted((survivor.pk, loser.pk))
        candidate = DuplicateCandidate.objects.filter(
            account_a_id=first, account_b_id=second, status=CandidateStatus.OPEN
        ).first()
        try:
            merges.append(
                merge_request(
                    survivor=survivor,
                    loser=loser,
                    candidate=candidate,
                    actor=actor,
                    reason=reason,
                )
            )
        except ValidationError as exc:
            refused.append((loser.enterprise_id, "; ".join(exc.messages)))
    return GroupMergeOutcome(merges=merges, refused=refused)
