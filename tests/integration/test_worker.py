"""A real Celery worker runs Tandem's tasks against the test database and broker."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import transaction
from django.utils import timezone

from q2c import services
from q2c.models import Contract, ContractState
from q2c.tasks import contracts_expire_ended
from tandem.celery import app
from tests import factories
from tests.integration.workers import WorkerHandle

pytestmark = pytest.mark.integration

WAIT_DEADLINE_S = 60.0


def wait_for_contract_state(contract: Contract, state: str, worker: WorkerHandle) -> Contract:
    deadline = time.monotonic() + WAIT_DEADLINE_S
    while True:
        contract.refresh_from_db()
        if contract.state == state:
            return contract
        if not worker.is_running() or time.monotonic() > deadline:
            pytest.fail(
                f"{contract} is still {contract.state!r}, expected {state!r}; "
                f"worker log:\n{worker.log()}"
            )
        time.sleep(0.2)


def test_worker_expires_ended_contracts_as_the_worker_system_actor(celery_worker_process):
    # given
    today = timezone.localdate()
    end_date = today - dt.timedelta(days=10)
    with transaction.atomic():
        contract = factories.contract(
            start_date=end_date - dt.timedelta(days=364), end_date=end_date
        )
        services.contract_activate(contract=contract, actor=factories.actor(), reason="test setup")
        # when
        transaction.on_commit(contracts_expire_ended.delay)
    # then
    contract = wait_for_contract_state(contract, ContractState.EXPIRED, celery_worker_process)
    row = contract.history.order_by("-history_id").first()
    assert (row.state, row.history_user.username, row.history_change_reason) == (
        "expired",
        "worker",
        f"term ended on {end_date}",
    )
    assert row.history_user.is_active is False
    assert row.history_user.has_usable_password() is False
    assert contract.history.filter(state="expired").count() == 1


def test_worker_runs_with_late_acks_and_every_tandem_queue(celery_worker_process):
    # given
    inspector = app.control.inspect(destination=[celery_worker_process.hostname], timeout=5)
    # when
    # The worker reports its configuration under the Django settings names it was read from.
    worker_conf = inspector.conf()[celery_worker_process.hostname]
    worker_queues = inspector.active_queues()[celery_worker_process.hostname]
    # then
    assert (
        app.conf.task_acks_late,
        app.conf.task_reject_on_worker_lost,
        app.conf.worker_prefetch_multiplier,
    ) == (True, True, 1)
    assert (
        worker_conf["CELERY_TASK_ACKS_LATE"],
        worker_conf["CELERY_TASK_REJECT_ON_WORKER_LOST"],
        worker_conf["CELERY_WORKER_PREFETCH_MULTIPLIER"],
    ) == (True, True, 1)
    assert [queue.name for queue in app.conf.task_queues] == [
        "default", "crm", "cpq", "billing", "erp", "tax", "payments",
    ]  # fmt: skip
    assert sorted(queue["name"] for queue in worker_queues) == [
        "billing", "cpq", "crm", "default", "erp", "payments", "tax",
    ]  # fmt: skip
