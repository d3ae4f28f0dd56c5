"""The exception queue: every failure an operator must see, with its context and owner.

A workflow step that fails permanently (or exhausts its retries) raises one of these; it
links the workflow run, the step, the order and the outbound calls, holds the order, and
resolves itself when a retry of that step succeeds. Identical errors share a fingerprint
(system, error class, step) so the console can group them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import FSMField, transition

from core.audit import AuditedHistory
from core.problems import Category, Severity, Team
from core.records import ConcurrentTransitions


class ExceptionState(models.TextChoices):
    OPEN = "open", "Open"
    RETRYING = "retrying", "Retry in progress"
    RESOLVED = "resolved", "Resolved"
    IGNORED = "ignored", "Ignored"


OPEN_STATES = [ExceptionState.OPEN, ExceptionState.RETRYING]

# Codes an operator resolves with by hand ("retry_succeeded" is set only by the engine,
# "compensated" also by an approved compensation).
RESOLUTION_CODES: dict[str, str] = {
    "fixed_at_source": "Fixed in the source system",
    "fixed_downstream": "Fixed in the target system by hand",
    "data_corrected": "Data corrected in Tandem",
    "compensated": "Compensated (the effect was reversed)",
    "duplicate": "Duplicate of another exception",
    "not_a_problem": "Not a problem",
}
# The code the admin's Resolve action closes with.
ADMIN_RESOLUTION_CODE = "resolved_in_admin"
# Set when what the exception reported went away (a reconciliation no longer finds the drift).
GONE_RESOLUTION_CODE = "gone"


class OperationalException(ConcurrentTransitions, models.Model):
    category = models.CharField(max_length=30, choices=Category.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    owner_team = models.CharField(max_length=30, choices=Team.choices)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="assigned_exceptions",
    )  # fmt: skip
    state = FSMField(default=ExceptionState.OPEN, choices=ExceptionState.choices, protected=True)
    system = models.CharField(max_length=20, blank=True)
    step = models.CharField(max_length=60, blank=True)
    error_class = models.CharField(max_length=120, blank=True)
    message = models.TextField()
    context = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64, db_index=True)
    correlation_id = models.CharField(max_length=40, blank=True, db_index=True)
    order = models.ForeignKey(
        "q2c.Order", on_delete=models.PROTECT, null=True, blank=True, related_name="exceptions"
    )
    workflow_run = models.ForeignKey(
        "orchestration.WorkflowRun", on_delete=models.PROTECT, null=True, blank=True,
        related_name="exceptions",
    )  # fmt: skip
    step_run = models.ForeignKey(
        "orchestration.StepRun", on_delete=models.PROTECT, null=True, blank=True,
        related_name="exceptions",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sla_due_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_code = models.CharField(max_length=40, blank=True)
    resolution_note = models.TextField(blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "owner_team", "created_at"]),
            models.Index(fields=["state", "category"]),
            models.Index(fields=["state", "sla_due_at"]),
            # The queue's default view (open or retrying, newest first) read in index order:
            # a few thousand open rows among hundreds of thousands closed ones.
            models.Index(
                fields=["-created_at", "-id"],
                condition=models.Q(state__in=OPEN_STATES),
                name="exception_open_created_idx",
            ),
            # The grouped queue's default view (open or retrying): every column it groups,
            # counts and filters on, so the open groups are aggregated from the index alone,
            # and each group's newest open exception (its example) is the end of its range.
            models.Index(
                fields=[
                    "fingerprint",
                    "category",
                    "owner_team",
                    "system",
                    "step",
                    "error_class",
                    "created_at",
                ],
                include=["sla_due_at"],
                condition=models.Q(state__in=OPEN_STATES),
                name="exception_open_group_idx",
            ),
            # A group's newest exception in any state (the example of the grouped view).
            models.Index(fields=["fingerprint", "-created_at"], name="exception_fp_created_idx"),
            # The dashboard's open exceptions by team, age and overdue, from the index alone.
            models.Index(
                fields=["owner_team", "created_at"],
                include=["sla_due_at"],
                condition=models.Q(state__in=OPEN_STATES),
                name="exception_open_team_idx",
            ),
        ]
        permissions = [
            ("retry_exception", "Can retry the step behind an exception"),
            ("resolve_exception", "Can resolve or ignore an exception"),
            ("assign_exception", "Can assign an exception to a person"),
        ]

    def __str__(self) -> str:
        return f"EXC-{self.pk} {self.category}: {self.message[:60]}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_overdue(self) -> bool:
        return self.is_open and self.sla_due_at < timezone.now()

    @transition(field=state, source=ExceptionState.OPEN, target=ExceptionState.RETRYING)
    def start_retry(self) -> None:
        pass

    @transition(field=state, source=ExceptionState.RETRYING, target=ExceptionState.OPEN)
    def retry_failed(self, *, message: str, context: dict[str, Any]) -> None:
        self.message = message
        self.context = context

    @transition(field=state, source=OPEN_STATES, target=ExceptionState.RESOLVED)
    def resolve(self, *, code: str, note: str = "") -> None:
        self.resolution_code = code
        self.resolution_note = note
        self.resolved_at = timezone.now()

    @transition(field=state, source=OPEN_STATES, target=ExceptionState.IGNORED)
    def ignore(self, *, note: str) -> None:
        self.resolution_code = "ignored"
        self.resolution_note = note
        self.resolved_at = timezone.now()


class ExceptionComment(models.Model):
    """A note an operator leaves on an exception (kept with history, never edited away)."""

    exception = models.ForeignKey(
        OperationalException, on_delete=models.PROTECT, related_name="comments"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exception_comments"
    )
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    history = AuditedHistory()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"comment {self.pk} on EXC-{self.exception_id}"


# --- Replays --------------------------------------------------------------------------------


class ReplayKind(models.TextChoices):
    STEP = "step", "Replay a step (and the steps after it)"
    WORKFLOW = "workflow", "Replay the whole workflow"
    COMPENSATION = "compensation", "Compensate an effect that already happened"


class Compensation(models.TextChoices):
    CANCEL_ERP_ORDER = "cancel_erp_order", "Cancel the ERP sales order"


class ReplayState(models.TextChoices):
    REQUESTED = "requested", "Awaiting approval"
    APPROVED = "approved", "Approved, queued"
    REJECTED = "rejected", "Rejected"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


# Categories whose failing step may be replayed with a corrected payload: the data was wrong,
# not the system. A downstream outage or a duplicate event is replayed as it was.
CORRECTABLE_CATEGORIES: frozenset[str] = frozenset(
    {Category.VALIDATION, Category.MAPPING, Category.MASTER_DATA, Category.TAX}
)


class Replay(ConcurrentTransitions, models.Model):
    """A request to run a step, a workflow or a compensation again, approved by another
    person before a worker executes it (maker-checker)."""

    kind = models.CharField(max_length=20, choices=ReplayKind.choices)
    state = FSMField(default=ReplayState.REQUESTED, choices=ReplayState.choices, protected=True)
    exception = models.ForeignKey(
        OperationalException, on_delete=models.PROTECT, null=True, blank=True,
        related_name="replays",
    )  # fmt: skip
    workflow_run = models.ForeignKey(
        "orchestration.WorkflowRun", on_delete=models.PROTECT, related_name="replays"
    )
    step_run = models.ForeignKey(
        "orchestration.StepRun", on_delete=models.PROTECT, null=True, blank=True,
        related_name="replays", help_text="the step the replay starts from",
    )  # fmt: skip
    compensation = models.CharField(max_length=30, choices=Compensation.choices, blank=True)
    reason = models.TextField()
    original_payload = models.JSONField(default=dict, blank=True)
    corrected_payload = models.JSONField(null=True, blank=True)
    preview = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="replays_requested"
    )
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="replays_decided",
    )  # fmt: skip
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result_message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-requested_at", "-pk"]
        indexes = [models.Index(fields=["state", "requested_at"])]
        constraints = [
            # Maker-checker: whoever decides is never whoever asked, whatever code path.
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="replay_decider_is_not_requester",
            ),
            models.CheckConstraint(
                condition=~Q(kind=ReplayKind.COMPENSATION) | ~Q(compensation=""),
                name="replay_compensation_named",
            ),
        ]
        permissions = [
            ("request_replay", "Can request a replay or a compensation"),
            ("approve_replay", "Can approve or reject someone else's replay"),
        ]

    def __str__(self) -> str:
        return f"RPL-{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.state in (ReplayState.REQUESTED, ReplayState.APPROVED, ReplayState.RUNNING)

    @transition(field=state, source=ReplayState.REQUESTED, target=ReplayState.APPROVED)
    def approve(self, *, by: Any, note: str) -> None:
        self.decided_by = by
        self.decided_at = timezone.now()
        self.decision_reason = note

    @transition(field=state, source=ReplayState.REQUESTED, target=ReplayState.REJECTED)
    def reject(self, *, by: Any, note: str) -> None:
        self.decided_by = by
        self.decided_at = timezone.now()
        self.decision_reason = note

    @transition(field=state, source=ReplayState.APPROVED, target=ReplayState.RUNNING)
    def start(self) -> None:
        self.started_at = timezone.now()

    @transition(field=state, source=ReplayState.RUNNING, target=ReplayState.SUCCEEDED)
    def succeed(self, *, message: str, result: dict[str, Any]) -> None:
        self.finished_at = timezone.now()
        self.result_message = message
        self.result = result

    @transition(
        field=state, source=[ReplayState.APPROVED, ReplayState.RUNNING], target=ReplayState.FAILED
    )
    def fail(self, *, message: str, result: dict[str, Any]) -> None:
        self.finished_at = timezone.now()
        self.result_message = message
        self.result = result
