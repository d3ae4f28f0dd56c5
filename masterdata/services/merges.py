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
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from core.audit import Actor, audit_context
from core.errors import Refused, reason_require
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
    """Called once at start-up by each app that takes part in merges (registering twice is
    harmless)."""
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
    An empty value never wins over a filled one. A read: refuses nothing, writes nothing."""
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
    override the survivorship defaults.

    One transaction; both accounts are locked in pk order. Refuses a blank reason, an
    account merged into itself or an unknown field choice (``INVALID``), an account that is
    not active (``STATE``) and a merge of either account already awaiting approval
    (``DUPLICATE``); raises ``PermissionDenied`` for anyone but a steward. Returns the merge,
    requested or merged."""
    reason_require(reason)
    steward_require(actor)
    if survivor.pk == loser.pk:
        raise Refused("an account cannot be merged into itself", kind=Refused.Kind.INVALID)
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
        raise Refused(f"unknown field choices: {', '.join(sorted(bad))}", kind=Refused.Kind.INVALID)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = lock_accounts([survivor.pk, loser.pk])
        _accounts_require_active(*locked.values())
        if (
            MergeRecord.objects.filter(
                state=MergeState.REQUESTED, loser__in=[survivor.pk, loser.pk]
            ).exists()
            or MergeRecord.objects.filter(state=MergeState.REQUESTED, survivor=loser.pk).exists()
        ):
            raise Refused(
                "a merge of one of these accounts is already awaiting approval",
                kind=Refused.Kind.DUPLICATE,
            )
        merge = MergeRecord.objects.create(
            survivor=locked[survivor.pk], loser=locked[loser.pk], candidate=candidate,
            field_choices=choices, reason=reason, requested_by=actor.user,
            requested_at=timezone.now(),
        )  # fmt: skip
        if not settings.TANDEM_MERGE_REQUIRES_APPROVAL:
            _merge_execute(merge, approver=None, actor=actor, reason=reason)
    return merge


def _merge_require_requested(merge: MergeRecord, what: str) -> None:
    if merge.state != MergeState.REQUESTED:
        raise Refused(
            f"{merge} is {merge.state}; only a requested merge is {what}",
            kind=Refused.Kind.TRANSITION,
        )


def merge_approve(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    """The checker runs a requested merge; the requester may not approve their own.

    One transaction; the merge, then both accounts are locked. Refuses a blank reason, a
    merge that is not requested (``TRANSITION``) and whatever running it refuses (an account
    no longer active, ``STATE``); raises ``PermissionDenied`` for anyone but a steward other
    than the requester. Returns the merge, merged."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.requested_by_id == actor.user.pk:
            raise PermissionDenied("a merge must be approved by another steward than its requester")
        _merge_require_requested(merge, "approved")
        _merge_execute(merge, approver=actor.user, actor=actor, reason=reason)
    return merge


def merge_reject(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    """The checker turns a requested merge down; nothing moves.

    One transaction, the merge locked. Refuses a blank reason and a merge that is not
    requested (``TRANSITION``); raises ``PermissionDenied`` for anyone but a steward other
    than the requester. Returns the merge, rejected."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.requested_by_id == actor.user.pk:
            raise PermissionDenied("a merge must be rejected by another steward than its requester")
        _merge_require_requested(merge, "rejected")
        merge.reject(by=actor.user, at=timezone.now())
        merge.save()
    return merge


def _accounts_require_active(*accounts: Account) -> None:
    for account in accounts:
        if account.status != AccountStatus.ACTIVE:
            raise Refused(
                f"{account.enterprise_id} is {account.status}; only active accounts merge",
                kind=Refused.Kind.STATE,
            )


class _MoveLog:
    """Records each reference a merge re-points (``record(obj, field, before, after)``), so
    an unmerge can move it back; the rows are stored together once everything moved."""

    def __init__(self, merge: MergeRecord) -> None:
        self.merge = merge
        self.references: list[MergedReference] = []

    def __call__(self, obj: Model, field: str, before: Any, after: Any) -> None:
        self.references.append(
            MergedReference(
                merge=self.merge,
                content_type=ContentType.objects.get_for_model(obj),
                object_id=obj.pk,
                label=_label(obj),
                field=field,
                before=before,
                after=after,
            )
        )


def _merge_execute(merge: MergeRecord, *, approver: Any, actor: Actor, reason: str) -> None:
    """Inside the caller's transaction: lock both accounts (pk order), move every reference
    from the loser to the survivor with history, record each move, mark the loser merged."""
    locked = lock_accounts([merge.survivor_id, merge.loser_id])
    survivor, loser = locked[merge.survivor_id], locked[merge.loser_id]
    _accounts_require_active(survivor, loser)
    for observer in _observers:
        observer.merge_starting(merge=merge, survivor=survivor, loser=loser)
    record = _MoveLog(merge)
    _references_move(survivor=survivor, loser=loser, record=record)
    for observer in _observers:
        observer.merge_moving(merge=merge, survivor=survivor, loser=loser, record=record)
    alias = AccountAlias.objects.create(alias=loser.enterprise_id, account=survivor)
    record(alias, "created", "", survivor.pk)  # it did not exist before
    before_values = _survivorship_apply(merge, survivor=survivor, loser=loser)
    loser.mark_merged(survivor=survivor)
    loser.save()
    MergedReference.objects.bulk_create(record.references)

    merge.survivor_before = before_values
    merge.complete(approved_by=approver, at=timezone.now())
    merge.save()
    _candidate_decide(
        merge, status=CandidateStatus.MERGED, at=merge.merged_at, actor=actor, reason=reason
    )
    for observer in _observers:
        observer.merge_executed(merge=merge)


def _references_move(*, survivor: Account, loser: Account, record: _MoveLog) -> None:
    """Re-point master data's own references from the loser to the survivor, locked in pk
    order and saved with history: every account foreign key, the crosswalk, the accounts
    merged into the loser earlier (chains stay flat) and the loser's aliases."""
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
    for earlier in Account.objects.select_for_update().filter(merged_into=loser).order_by("pk"):
        earlier.merged_into = survivor
        earlier.save(update_fields=["merged_into", "updated_at"])
        record(earlier, "merged_into", loser.pk, survivor.pk)
    for alias in AccountAlias.objects.select_for_update().filter(account=loser).order_by("pk"):
        alias.account = survivor
        alias.save()
        record(alias, "account", loser.pk, survivor.pk)


def _survivorship_apply(merge: MergeRecord, *, survivor: Account, loser: Account) -> dict[str, str]:
    """Give the survivor the loser's value of each field chosen so (with new match keys) and
    save it; returns the survivor's values the merge replaced, for an unmerge."""
    before_values: dict[str, str] = {}
    for name, side in merge.field_choices.items():
        if side == "loser" and getattr(survivor, name) != getattr(loser, name):
            before_values[name] = getattr(survivor, name)
            setattr(survivor, name, getattr(loser, name))
    if before_values:
        _match_keys_refresh(survivor)
        record_full_clean(survivor, exclude=["enterprise_id"])
        survivor.save()
    return before_values


def _match_keys_refresh(account: Account) -> None:
    for key, value in account_keys(
        legal_name=account.legal_name, country=account.country, tax_id=account.tax_id,
        domain=account.domain, email=account.email,
    ).items():  # fmt: skip
        setattr(account, key, value)


def _candidate_decide(
    merge: MergeRecord, *, status: str, at: Any, actor: Actor, reason: str
) -> None:
    """Record on the merge's duplicate pair, if it came from one, what became of it (locked,
    with history)."""
    if merge.candidate_id is None:
        return
    candidate = DuplicateCandidate.objects.select_for_update().get(pk=merge.candidate_id)
    candidate.status = status
    candidate.decided_at = at
    candidate.decided_by = actor.user
    candidate.decision_reason = reason
    candidate.save()


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
    stay there unless named in ``also_move``.

    One transaction; the merge, both accounts and every record moved back are locked.
    Refuses a blank reason, a merge that is not completed, a loser no longer merged into the
    survivor and an ``also_move`` record that is not the survivor's (``STATE``); raises
    ``PermissionDenied`` for anyone but a steward. Returns the merge, unmerged."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        merge = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if merge.state != MergeState.MERGED:
            raise Refused(
                f"{merge} is {merge.state}; only a completed merge is undone",
                kind=Refused.Kind.STATE,
            )
        locked = lock_accounts([merge.survivor_id, merge.loser_id])
        survivor, loser = locked[merge.survivor_id], locked[merge.loser_id]
        if loser.merged_into_id != survivor.pk:
            raise Refused(
                f"{loser.enterprise_id} is no longer merged into {survivor.enterprise_id}",
                kind=Refused.Kind.STATE,
            )
        loser.mark_unmerged()
        loser.save()
        for ref in merge.references.select_related("content_type").order_by("pk"):
            if _reference_move_back(ref, survivor=survivor, loser=loser):
                ref.moved_back = True
                ref.save(update_fields=["moved_back"])
        for obj in also_move:
            _record_move_back(obj, survivor=survivor, loser=loser)
        if merge.survivor_before:
            for name, value in merge.survivor_before.items():
                setattr(survivor, name, value)
            _match_keys_refresh(survivor)
            survivor.save()
        merge.undo(by=actor.user, at=timezone.now(), reason_text=reason)
        for observer in _observers:
            observer.merge_undone(merge=merge, actor=actor)
        merge.save()
        # a wrong merge: not one customer
        _candidate_decide(
            merge, status=CandidateStatus.DISMISSED, at=merge.unmerged_at, actor=actor,
            reason=f"unmerged: {reason}",
        )  # fmt: skip
    return merge


def _reference_move_back(ref: MergedReference, *, survivor: Account, loser: Account) -> bool:
    """Put back one reference the merge moved (locked, with history); False when it is gone
    or was moved elsewhere since, where a person put it."""
    model = ref.content_type.model_class()
    assert model is not None
    if ref.field == "created":
        for alias in AccountAlias.objects.filter(pk=ref.object_id, account=survivor):
            alias.delete()
        return True
    obj: Any = model._default_manager.select_for_update().filter(pk=ref.object_id).first()
    if obj is None:
        return False
    if model is ExternalId:
        if obj.object_id != survivor.pk:
            return False
        obj.object_id = ref.before["object_id"]
        obj.enterprise_id = ref.before["enterprise_id"]
        obj.save()
    elif ref.field == "context.candidates":
        current = list(obj.context.get("candidates") or [])
        if current != ref.after:
            return False
        obj.context = {**obj.context, "candidates": ref.before}
        obj.save()
    else:
        if getattr(obj, f"{ref.field}_id") != survivor.pk:
            return False  # moved elsewhere since: leave it where a person put it
        setattr(obj, f"{ref.field}_id", loser.pk)
        obj.save(update_fields=[ref.field, *(["updated_at"] if hasattr(obj, "updated_at") else [])])
    return True


def _record_move_back(obj: Model, *, survivor: Account, loser: Account) -> None:
    """Move a record attached to the survivor after the merge to the loser (a steward's pick)."""
    field = _account_field(obj)
    locked_obj = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
    if getattr(locked_obj, f"{field}_id") != survivor.pk:
        raise Refused(
            f"{_label(obj)} does not belong to {survivor.enterprise_id}", kind=Refused.Kind.STATE
        )
    setattr(locked_obj, f"{field}_id", loser.pk)
    locked_obj.save(
        update_fields=[field, *(["updated_at"] if hasattr(locked_obj, "updated_at") else [])]
    )


def _account_field(obj: Model) -> str:
    for model, field in account_reference_fields():
        if isinstance(obj, model):
            return field
    # Only records offered by selectors.records_attached_since reach here.
    raise ValueError(f"{_label(obj)} has no account to move")


def merge_push_retry(*, merge: MergeRecord, actor: Actor, reason: str) -> MergeRecord:
    """Queue a failed push again (a steward fixed what made the system refuse it).

    One transaction, the merge locked; the observers send the push after commit. Refuses a
    blank reason and a push that has not failed (``STATE``); raises ``PermissionDenied`` for
    anyone but a steward. Returns the merge, its push pending."""
    reason_require(reason)
    steward_require(actor)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        locked = MergeRecord.objects.select_for_update().get(pk=merge.pk)
        if locked.push_state != PushState.FAILED:
            raise Refused(
                f"{locked}'s push is {locked.push_state}; only a failed one is retried",
                kind=Refused.Kind.STATE,
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
        except Refused as exc:
            refused.append((loser.enterprise_id, exc.message))
    return GroupMergeOutcome(merges=merges, refused=refused)
