"""Counts, inside a benchmark's worker, what each workflow step costs the database.

Imported by the pipeline's workers (``celery worker --include bench.step_probe``), never by
Tandem: around every ``orchestration.execute_step`` task it counts the SQL statements the
worker thread's connection runs and the transactions it commits (atomic blocks, and each
statement run in autocommit), then appends ``[step id, outcome, statements, transactions]``
to a Redis list of the benchmark's own Redis database. ``bench/pipeline.py`` reads it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun

KEY = "bench:step_cost"
TASK = "orchestration.execute_step"

_local = threading.local()
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    return _client


@task_prerun.connect
def _count_from_here(task: Any = None, **_: Any) -> None:
    if getattr(task, "name", "") != TASK:
        return
    from django.db import connection

    cost = [0, 0]

    def statement(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
        cost[0] += 1
        if not connection.in_atomic_block:
            cost[1] += 1
        return execute(sql, params, many, ctx)

    commit = connection._commit

    def counting_commit() -> None:
        cost[1] += 1
        commit()

    connection._commit = counting_commit
    connection.execute_wrappers.append(statement)
    _local.probe = (connection, statement, cost)


@task_postrun.connect
def _report(task: Any = None, args: Any = None, retval: Any = None, **_: Any) -> None:
    probe = getattr(_local, "probe", None)
    if probe is None or getattr(task, "name", "") != TASK:
        return
    _local.probe = None
    connection, statement, cost = probe
    connection.execute_wrappers.remove(statement)
    del connection._commit
    step_id = args[0] if args else None
    _redis().rpush(KEY, json.dumps([step_id, str(retval), cost[0], cost[1]]))


def step_costs(redis_url: str) -> list[tuple[int, str, int, int]]:
    """What the workers reported: (step id, outcome, statements, transactions) per task."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [tuple(json.loads(item)) for item in client.lrange(KEY, 0, -1)]  # type: ignore[misc]
    finally:
        client.close()
