"""Merging duplicate accounts and undoing it: survivorship per field, every reference
re-pointed with history and recorded so an unmerge can move it back. Other apps take part
through ``MergeObserver`` (the exception queue re-points its master-data exceptions; the CRM
hears of the merge through orchestration)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import reason_require
from core.records import record_full_clean
from masterdata.identity import account_keys
from masterdata.locks import lock_accounts
from masterdata.models import (
    Account,
    AccountAlias,
    AccountStatus,
    CandidateStatus,
    DuplicateCandidate,
    ExternalId,
    MergedReference,
    MergeRecord,
    MergeState,
    PushState,
)
from masterdata.selectors import account_reference_fields
from masterdata.services.records import steward_require


class MergeObserver(Protocol):
    """What other apps do when accounts merge, registered at start-up (``AppConfig.ready``)
    so master data imports none of them. Every hook runs inside the merge's transaction."""

    def merge_starting(self, *, merge: MergeRecord, survivor: Account, loser: Account) -> None:
        """Before anything moves (e.g. note whether a downstream system must be told)."""

    def merge_moving(
        self,
        *,
        merge: MergeRecord,
        survivor: Account,
        loser: Account,
        record: Callable[[Model, str, Any, Any], None],
    ) -> None:
        """Move what the app keeps about the loser to the survivor; ``record(obj, field,
        before, after)`` each move so an unmerge can move it back."""

    def merge_executed(self, *, merge: MergeRecord) -> None:
        """The merge is complete (e.g. tell a downstream system after commit)."""

    def merge_undone(self, *, merge: MergeRecord, actor: Actor) -> None:
        """The merge was undone; ``merge`` is saved after the hooks."""

    def push_requested(self, *, merge: MergeRecord) -> None:
        """A steward asked for a failed downstream push to be sent again."""


_observers: list[MergeObserver] = []


def merge_observer_register(observer: MergeObserver) -> None:
    if observer not in _observers:
        _observers.append(observer)


# The account fields a steward chooses between, field by field, when merging.
MERGE_FIELDS = (
    "legal_name", "domain", "tax_id", "address_line1", "address_line2", "city", "postcode",
    "region", "country", "phone", "email",
)  # fmt: skip
ACCOUNT_CT_LABEL = "masterdata.account"


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
    steward_require(actor)
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
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.requested_by_id == actor.user.pk:
            raise PermissionDenied("a merge must be approved by another steward than its requester")
        _merge_execute(merge, approver=actor.user, actor=actor, reason=reason)
    return merge


def merge_reject(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    reason_require(reason)
    steward_require(actor)
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
    for observer in _observers:
        observer.merge_starting(merge=merge, survivor=survivor, loser=loser)
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
    for observer in _observers:
        observer.merge_moving(merge=merge, survivor=survivor, loser=loser, record=record)
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
    merge.save()
    if merge.candidate_id is not None:
        candidate = DuplicateCandidate.objects.select_for_update().get(pk=merge.candidate_id)
        candidate.status = CandidateStatus.MERGED
        candidate.decided_at = merge.merged_at
        candidate.decided_by = actor.user
        candidate.decision_reason = reason
        candidate.save()
    for observer in _observers:
        observer.merge_executed(merge=merge)


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
    steward_require(actor)
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
        for observer in _observers:
            observer.merge_undone(merge=merge, actor=actor)
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


def merge_push_retry(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    """Queue a failed push again (a steward fixed what made the system refuse it)."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if locked.push_state != PushState.FAILED:
            raise ValidationError(
                f"{locked}'s push is {locked.push_state}; only a failed one is retried"
            )
        locked.push_state = PushState.PENDING
        locked.push_attempts = 0
        locked.save()
        for observer in _observers:
            observer.push_requested(merge=locked)
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
    steward_require(actor)
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
