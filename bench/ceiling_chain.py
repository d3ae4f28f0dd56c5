"""The pipeline's ceiling: a bare Celery chain on the same Redis and PostgreSQL.

Each "order" is a chain of as many steps as the quote-to-cash workflow has; each step is one
INSERT (committed) and the enqueue of the next step, nothing else. Two prefork worker
processes, ``acks_late``, prefetch 1: the same delivery guarantees the engine's workers run
with. What Tandem's pipeline reaches, divided by what this reaches in the same run, is the
share of the machine the orchestration leaves to the work itself.

Started by ``bench/pipeline.py`` as ``celery -A bench.ceiling_chain worker``; imports nothing
of Tandem (no Django), so its cost is Celery's and PostgreSQL's alone.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from celery import Celery

TABLE = "bench_chain"
app = Celery("ceiling", broker=os.environ.get("CEILING_BROKER_URL", "redis://127.0.0.1:6379/12"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    task_default_queue="ceiling",
)

_connection: psycopg.Connection[Any] | None = None


def _db() -> psycopg.Connection[Any]:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["CEILING_DATABASE_URL"])
    return _connection


def table_create(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, chain integer NOT NULL, "
            "position integer NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )


def finished(database_url: str, steps: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {TABLE} WHERE position = %s",  # noqa: S608 (our table)
            [steps - 1],
        ).fetchone()
    return int(row[0]) if row else 0


@app.task(name="ceiling.step")
def ceiling_step(chain: int, position: int, steps: int) -> None:
    conn = _db()
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {TABLE} (chain, position) VALUES (%s, %s)",  # noqa: S608 (our table)
            [chain, position],
        )
    if position + 1 < steps:
        ceiling_step.delay(chain, position + 1, steps)
