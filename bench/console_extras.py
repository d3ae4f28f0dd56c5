"""The console's later tables, seeded from the rows already there with INSERT ... SELECT.

Replays (about one exception in ten with a workflow run), comments on exceptions, duplicate
candidates between accounts, the merges of the candidates marked merged, and poll cursors.
Deterministic (``setseed``) and idempotent: each table is emptied first, so it can run on a
database seeded before these pages existed (``bench/console.py --extras-only``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection

from bench.console_seed import PEOPLE


def people_ids() -> list[int]:
    from django.contrib.auth import get_user_model

    names = [name for team in PEOPLE.values() for name in team]
    people = get_user_model().objects.filter(username__in=names).order_by("pk")
    return list(people.values_list("pk", flat=True))


STATEMENTS: list[tuple[str, str]] = [
    (
        "exceptions_replay",
        # Every tenth exception that has a step; requester and decider always differ.
        """
        INSERT INTO exceptions_replay (kind, state, compensation, reason, original_payload,
            corrected_payload, preview, requested_at, decided_at, decision_reason, started_at,
            finished_at, result_message, result, decided_by_id, exception_id, requested_by_id,
            step_run_id, workflow_run_id)
        SELECT CASE WHEN e.id %% 7 = 0 THEN 'workflow' ELSE 'step' END,
               s.state, '', 'after the fix in ' || e.system, '{}'::jsonb,
               CASE WHEN e.id %% 3 = 0 THEN '{"tax_code": "DE-19"}'::jsonb END,
               '{"steps": []}'::jsonb, e.created_at + interval '2 hours',
               CASE WHEN s.state <> 'requested' THEN e.created_at + interval '3 hours' END,
               CASE WHEN s.state = 'rejected' THEN 'not the right fix' ELSE '' END,
               CASE WHEN s.state IN ('running', 'succeeded', 'failed')
                    THEN e.created_at + interval '3 hours' END,
               CASE WHEN s.state IN ('succeeded', 'failed')
                    THEN e.created_at + interval '3 hours 1 minute' END,
               CASE WHEN s.state = 'failed' THEN 'the step failed again' ELSE '' END,
               '{}'::jsonb,
               CASE WHEN s.state <> 'requested'
                    THEN (%(people)s::int[])[1 + (e.id + 1) %% %(n)s] END,
               e.id, (%(people)s::int[])[1 + e.id %% %(n)s], e.step_run_id, e.workflow_run_id
        FROM exceptions_operationalexception e
        JOIN orchestration_steprun r ON r.id = e.step_run_id AND r.run_id = e.workflow_run_id
        CROSS JOIN LATERAL (SELECT CASE
            WHEN e.id %% 100 < 4 THEN 'requested' WHEN e.id %% 100 < 6 THEN 'approved'
            WHEN e.id %% 100 < 10 THEN 'rejected' WHEN e.id %% 100 < 14 THEN 'failed'
            ELSE 'succeeded' END AS state) s
        WHERE e.step_run_id IS NOT NULL AND e.workflow_run_id IS NOT NULL AND e.id %% 10 = 3
        ORDER BY e.id
        """,
    ),
    (
        "exceptions_exceptioncomment",
        # Half the exceptions get one to three comments.
        """
        INSERT INTO exceptions_exceptioncomment (body, created_at, author_id, exception_id)
        SELECT 'Looked at this: ' || e.error_class || ', waiting on ' || e.system,
               e.created_at + k * interval '40 minutes',
               (%(people)s::int[])[1 + (e.id + k) %% %(n)s], e.id
        FROM exceptions_operationalexception e
        CROSS JOIN generate_series(1, 3) AS k
        WHERE e.id %% 2 = 0 AND k <= 1 + e.id %% 3
        ORDER BY e.id, k
        """,
    ),
    (
        "masterdata_duplicatecandidate",
        # One account in five paired with its neighbour: 20k pairs per 100k accounts.
        """
        INSERT INTO masterdata_duplicatecandidate (score, evidence, fingerprint, status,
            detected_at, decided_at, decision_reason, account_a_id, account_b_id, decided_by_id)
        SELECT round((0.55 + (a.id %% 45) / 100.0)::numeric, 3),
               jsonb_build_object('name', round((0.5 + (a.id %% 50) / 100.0)::numeric, 2),
                                  'domain', (a.id %% 3 = 0)),
               md5(a.id::text || ':' || b.id::text),
               CASE WHEN a.id %% 10 = 0 THEN 'merged' WHEN a.id %% 10 = 5 THEN 'dismissed'
                    ELSE 'open' END,
               now() - (a.id %% 90) * interval '1 day',
               CASE WHEN a.id %% 5 = 0 THEN now() - (a.id %% 60) * interval '1 day' END,
               CASE WHEN a.id %% 10 = 5 THEN 'different legal entities' ELSE '' END,
               a.id, b.id,
               CASE WHEN a.id %% 5 = 0 THEN (%(people)s::int[])[1 + a.id %% %(n)s] END
        FROM masterdata_account a JOIN masterdata_account b ON b.id = a.id + 1
        WHERE a.id %% 5 = 0
        ORDER BY a.id
        """,
    ),
    (
        "masterdata_mergerecord",
        """
        INSERT INTO masterdata_mergerecord (state, field_choices, survivor_before, reason,
            requested_at, merged_at, unmerged_at, unmerge_reason, push_state, push_attempts,
            push_error, approved_by_id, candidate_id, loser_id, requested_by_id, survivor_id,
            unmerged_by_id)
        SELECT CASE WHEN c.id %% 20 = 0 THEN 'unmerged' ELSE 'merged' END, '{}'::jsonb,
               '{}'::jsonb, 'same customer', c.decided_at - interval '1 hour', c.decided_at,
               CASE WHEN c.id %% 20 = 0 THEN c.decided_at + interval '1 day' END,
               CASE WHEN c.id %% 20 = 0 THEN 'two subsidiaries after all' ELSE '' END,
               'done', 1, '', (%(people)s::int[])[1 + (c.id + 1) %% %(n)s], c.id,
               c.account_b_id, (%(people)s::int[])[1 + c.id %% %(n)s], c.account_a_id,
               CASE WHEN c.id %% 20 = 0 THEN (%(people)s::int[])[1 + c.id %% %(n)s] END
        FROM masterdata_duplicatecandidate c WHERE c.status = 'merged' ORDER BY c.id
        """,
    ),
    (
        "orchestration_pollcursor",
        """
        INSERT INTO orchestration_pollcursor (system, stream, cursor, last_run_at,
            last_success_at, last_error, consecutive_failures, events_stored)
        VALUES ('erp', 'sales', '2026-11-26T05:00:00|91234', now(), now(), '', 0, 181234),
               ('erp', 'invoices', '2026-11-26T05:00:00|71234', now(), now(), '', 0, 120456),
               ('billing', 'invoices', '2026-11-26T04:59:00|5531', now(),
                now() - interval '3 minutes', 'HTTP 503', 2, 90321)
        """,
    ),
]


def extras_seed(say: Callable[[str], None]) -> dict[str, int]:
    people = people_ids()
    if len(people) < 2:
        raise SystemExit("seed the people first (bench/console_seed.py users_create)")
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in reversed([t for t, _ in STATEMENTS]):
            cursor.execute(f'TRUNCATE "{table}" RESTART IDENTITY CASCADE')
        for table, sql in STATEMENTS:
            started = time.monotonic()
            # "%%" in the SQL above is a literal modulo, "%(name)s" a bound parameter.
            cursor.execute(sql, {"people": people, "n": len(people)})
            counts[table] = cursor.rowcount
            say(f"{table}: {cursor.rowcount:,} rows ({time.monotonic() - started:.0f} s)")
        cursor.execute(
            "ANALYZE exceptions_replay, exceptions_exceptioncomment, "
            "masterdata_duplicatecandidate, masterdata_mergerecord, orchestration_pollcursor"
        )
    return counts
