"""How the exception queue hears of failures: it observes the workflow engine and takes the
problems other apps raise (core.problems). Registered in ``ExceptionsConfig.ready``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exceptions import selectors, services

if TYPE_CHECKING:
    from django.db.models import Model

    from core.audit import Actor
    from core.problems import Problem
    from exceptions.models import OperationalException
    from masterdata.models import Account, MergeRecord
    from orchestration.workflows.errors import StepFailed
    from orchestration.workflows.models import StepRun, WorkflowRun
    from orchestration.workflows.observers import Correction


class ExceptionQueue:
    """A failed step raises an exception and holds its order; a succeeded one resolves it;
    a retried one is marked as being worked on; a replayed run's end is recorded on the
    replay, and an approved replay's corrected payload is handed to the step it corrects."""

    def step_failed(self, *, step: StepRun, error: StepFailed, actor: Actor) -> None:
        services.exception_raise_for_step(step_run=step, error=error, actor=actor)

    def step_succeeded(self, *, step: StepRun, actor: Actor) -> None:
        services.exceptions_resolve_for_step(step_run=step, actor=actor)

    def steps_retrying(self, *, steps: list[StepRun], actor: Actor) -> None:
        for step in steps:
            services.exceptions_mark_retrying(step_run=step, actor=actor)

    def run_finished(self, *, run: WorkflowRun, ok: bool, message: str) -> None:
        services.replays_finish_for_run(run=run, ok=ok, message=message)

    def correction_for(self, *, step: StepRun) -> Correction | None:
        return selectors.replay_correction(step_run_id=step.pk)

    def problem_raise(self, problem: Problem, *, actor: Actor, reason: str) -> OperationalException:
        return services.exception_raise(problem=problem, actor=actor, reason=reason)

    def problem_close(self, reference: str, *, actor: Actor, reason: str) -> bool:
        return services.exception_close_gone(reference=reference, actor=actor, reason=reason)


QUEUE = ExceptionQueue()


class MasterDataExceptions:
    """A merge moves the master-data exceptions naming the loser among their candidate
    accounts to the survivor (and an unmerge moves them back: each move is recorded)."""

    def merge_starting(self, **_: Any) -> None:
        pass

    def merge_moving(
        self,
        *,
        merge: MergeRecord,
        survivor: Account,
        loser: Account,
        record: Callable[[Model, str, Any, Any], None],
    ) -> None:
        for exc in selectors.exceptions_naming_account(enterprise_id=loser.enterprise_id):
            named = list(exc.context.get("candidates") or [])
            renamed = [survivor.enterprise_id if i == loser.enterprise_id else i for i in named]
            exc.context = {**exc.context, "candidates": renamed}
            exc.save()
            record(exc, "context.candidates", named, renamed)

    def merge_executed(self, **_: Any) -> None:
        pass

    def merge_undone(self, **_: Any) -> None:
        pass

    def push_requested(self, **_: Any) -> None:
        pass


MASTER_DATA = MasterDataExceptions()
