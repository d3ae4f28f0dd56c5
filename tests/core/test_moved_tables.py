"""Tables made by q2c's first migration and now owned by core and tandem keep their rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from core.identifiers import identifier_allocate
from tandem.models import WorkerHeartbeat

BEFORE_THE_MOVE = [("q2c", "0010_list_sort_indexes"), ("core", None), ("tandem", None)]


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_the_move_are_read_by_the_moved_models():
    # given a database as the code before the move left it, with a counter and a heartbeat
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_THE_MOVE)
    old = executor.loader.project_state([BEFORE_THE_MOVE[0]]).apps
    old.get_model("q2c", "IdentifierCounter").objects.create(prefix="ZZZ", last_value=41)
    seen = timezone.now()
    old.get_model("q2c", "WorkerHeartbeat").objects.create(hostname="old-worker", seen_at=seen)
    # when it is migrated forward
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    # then the moved models read and advance the same rows
    assert identifier_allocate(prefix="ZZZ") == "ZZZ-000042"
    assert list(WorkerHeartbeat.objects.values_list("hostname", "seen_at")) == [
        ("old-worker", seen)
    ]
