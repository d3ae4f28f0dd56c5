"""Durable workflows: runs and step runs are rows; the broker message is only a nudge.

A step's idempotency key is stable per canonical record + step + record version, so a
replay or a redelivered message finds the effect it already produced (``StepEffect``) and
does not repeat it. ``WorkflowSignal`` stores an external event (e.g. the ERP's financial
acceptance) for a run even when it arrives before the step that waits for it.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django_fsm import FSMField, transition

from core.audit import AuditedHistory
from core.records import ConcurrentTransitions


class RunState(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for an external event"
    PAUSED = "paused", "Paused on an exception"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class WorkflowRun(ConcurrentTransitions, models.Model):
    kind = models.CharField(max_length=40)
    subject_id = models.CharField(max_length=20, db_index=True, help_text="enterprise id")
    subject_version = models.PositiveIntegerField(default=1)
    order = models.ForeignKey(
        "q2c.Order", on_delete=models.PROTECT, null=True, blank=True, related_name="workflow_runs"
    )
    state = FSMField(default=RunState.RUNNING, choices=RunState.choices, protected=True)
    current_step = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    history = AuditedHistory()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject_id", "subject_version"], name="workflowrun_one_per_subject"
            )
        ]
        indexes = [models.Index(fields=["state", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_id} v{self.subject_version}"

    @transition(field=state, source=[RunState.RUNNING, RunState.PAUSED], target=RunState.WAITING)
    def wait(self) -> None:
        pass

    @transition(field=state, source=[RunState.WAITING, RunState.PAUSED], target=RunState.RUNNING)
    def resume(self) -> None:
        pass

    @transition(field=state, source=[RunState.RUNNING, RunState.WAITING], target=RunState.PAUSED)
    def pause(self) -> None:
        pass

    @transition(field=state, source=[RunState.PAUSED, RunState.COMPLETED], target=RunState.RUNNING)
    def replay(self) -> None:
        """An approved replay runs steps of a paused or completed run again."""
        self.completed_at = None

    @transition(field=state, source=[RunState.RUNNING, RunState.WAITING], target=RunState.COMPLETED)
    def complete(self) -> None:
        self.completed_at = timezone.now()

    @transition(
        field=state,
        source=[RunState.RUNNING, RunState.WAITING, RunState.PAUSED],
        target=RunState.CANCELLED,
    )
    def cancel(self) -> None:
        self.completed_at = timezone.now()


class StepState(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for an external event"
    RETRY_SCHEDULED = "retry_scheduled", "Retry scheduled"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class StepRun(models.Model):
    """One step of one run. Changed only by the engine under a row lock (operational state;
    the run, the order and the exception carry the audited history)."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=60)
    position = models.PositiveSmallIntegerField()
    system = models.CharField(max_length=20, help_text="the queue the step runs on")
    state = models.CharField(max_length=20, choices=StepState.choices, default=StepState.PENDING)
    idempotency_key = models.CharField(max_length=160, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="while running: the worker renews this; once past, the worker is deemed lost",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    waiting_for = models.CharField(max_length=60, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    skipped_effect = models.BooleanField(
        default=False, help_text="the effect already existed, so it was not repeated"
    )

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="steprun_unique_position"),
            models.UniqueConstraint(fields=["run", "name"], name="steprun_unique_name"),
        ]
        indexes = [
            models.Index(fields=["state", "enqueued_at"]),
            models.Index(fields=["state", "next_attempt_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name} ({self.state})"


class StepEffect(models.Model):
    """The external effect a step produced, found again by its idempotency key."""

    idempotency_key = models.CharField(max_length=160, unique=True)
    system = models.CharField(max_length=20)
    external_id = models.CharField(max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.idempotency_key} → {self.external_id}"


class WorkflowSignal(models.Model):
    """An external event a run waits for (stored even when it arrives early, once)."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="signals")
    event_type = models.CharField(max_length=60)
    payload = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "event_type"], name="workflowsignal_once")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.event_type}"


class CircuitState(models.TextChoices):
    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half_open", "Half open (one trial call)"


class CircuitBreaker(models.Model):
    """Per-system breaker shared by every worker; visible in the admin and the console."""

    system = models.CharField(max_length=20, primary_key=True)
    state = models.CharField(max_length=10, choices=CircuitState.choices, default="closed")
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    open_until = models.DateTimeField(null=True, blank=True)
    last_failure = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.system}: {self.state}"
