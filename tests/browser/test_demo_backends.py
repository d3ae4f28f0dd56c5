"""The exception queue journeys (and the shorter journeys of the other roles) also pass on
the demo's backends (SQLite and kombu's filesystem broker), whatever backends this run uses:
CI runs on PostgreSQL, where a query SQLite refuses (a LIMIT inside a UNION) once went
unnoticed. ``TANDEM_TEST_BACKENDS=demo`` runs any test that way by hand; see
docs/reliability.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.integration

JOURNEYS = [
    "tests/browser/test_exception_groups_journey.py",
    "tests/browser/test_support_journey.py",
    "tests/browser/test_auditor_journey.py",
    "tests/browser/test_my_work_journey.py",
    "tests/browser/test_notification_journey.py",
    "tests/browser/test_match_file_journey.py",
]


def test_the_exception_queue_journeys_pass_on_sqlite_and_the_filesystem_broker() -> None:
    # given: a separate pytest run forced onto the demo's backends
    env = {**os.environ, "TANDEM_TEST_BACKENDS": "demo"}
    for name in ("PYTEST_XDIST_WORKER", "TANDEM_TEST_ISOLATED", "TANDEM_VAR_DIR"):
        env.pop(name, None)
    # when
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *JOURNEYS]
    result = subprocess.run(  # noqa: S603 (a fixed command line)
        command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=1200
    )
    # then
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "tandem backends: database=sqlite3 broker=filesystem://" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\b[1-9][0-9]* passed\b", summary), summary
    assert not re.search(r"failed|error|skipped|deselected", summary), summary
