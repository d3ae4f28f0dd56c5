"""Telling the CRM about a merge: after the merge commits, a task asks the CRM to merge the
loser's records into the survivor's, retrying what the CRM cannot take now; a refusal or the
last failed try becomes an exception for the data stewards. An unmerge after the CRM merged
asks the stewards to restore the CRM records by hand (CRMs cannot undo a merge by API).

Registered on master data's merges as a ``MergeObserver`` (``OrchestrationConfig.ready``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import QuerySet

from core.audit import Actor, audit_context
from core.problems import Category, Problem, Severity, Team, problem_raise
from masterdata.models import Account, ExternalId, MergeRecord, MergeState, PushState
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.registry import connector_for

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
    The outcome is recorded in one transaction with the merge locked; a merge undone while
    the CRM was merging asks the stewards to restore the CRM records. Refuses nothing; a
    merge that is gone or not pending is left alone.
    """
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
    problem_raise(
        Problem(
            category=Category.MASTER_DATA,
            severity=Severity.MEDIUM,
            team=Team.DATA_STEWARD,
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
            correlation_id=correlation_id,
        ),
        actor=actor,
        reason=reason,
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


def _crm_supports_merge() -> bool:
    try:
        return callable(getattr(connector_for("crm"), "account_merge", None))
    except Exception:  # a misconfigured connector cannot take the push
        return False


def _enqueue_push(merge_pk: int) -> None:
    from orchestration.tasks import merge_push as merge_push_task

    merge_push_task.delay(merge_pk)


class CrmMergePush:
    """The CRM hears of a merge when both accounts are known to it and it can merge."""

    def merge_starting(self, *, merge: MergeRecord, survivor: Account, loser: Account) -> None:
        account_ct = ContentType.objects.get_for_model(Account)
        crm_links = ExternalId.objects.filter(content_type=account_ct, system="crm")
        if (
            crm_links.filter(object_id=loser.pk).exists()
            and crm_links.filter(object_id=survivor.pk).exists()
            and _crm_supports_merge()
        ):
            merge.push_state = PushState.PENDING  # saved with the merge

    def merge_moving(self, **_: Any) -> None:
        pass

    def merge_executed(self, *, merge: MergeRecord) -> None:
        if merge.push_state == PushState.PENDING:
            merge_pk = merge.pk
            transaction.on_commit(lambda: _enqueue_push(merge_pk))

    def merge_undone(self, *, merge: MergeRecord, actor: Actor) -> None:
        if merge.push_state == PushState.DONE:
            # CRMs cannot undo a merge through their API: a steward restores it there.
            _crm_restore_exception(merge, actor=actor)
        elif merge.push_state in (PushState.PENDING, PushState.FAILED):
            merge.push_state = PushState.NOT_NEEDED  # never tell the CRM about it now
            merge.push_error = "unmerged before the crm was told"

    def push_requested(self, *, merge: MergeRecord) -> None:
        merge_pk = merge.pk
        transaction.on_commit(lambda: _enqueue_push(merge_pk))


CRM_MERGE_PUSH = CrmMergePush()
