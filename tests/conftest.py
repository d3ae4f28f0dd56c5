from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.audit import Actor


def pytest_report_header(config: Any) -> list[str]:
    db = settings.DATABASES["default"]
    broker = settings.CELERY_BROKER_URL.split("@")[-1]
    return [f"tandem backends: database={db['ENGINE'].rsplit('.', 1)[-1]} broker={broker}"]


@pytest.fixture(autouse=True)
def _role_groups(request: pytest.FixtureRequest) -> None:
    """The role groups (made by a data migration) for every test that uses the database.

    A transactional test flushes every table when it ends, the groups included; a test after
    it (in this run or on a reused database) would find no roles. One query when they exist.
    """
    uses_db = "django_db" in {mark.name for mark in request.node.iter_markers()} or bool(
        {"db", "transactional_db"} & set(request.fixturenames)
    )
    if not uses_db:
        return
    request.getfixturevalue("db")
    from django.apps import apps

    from core.roles import ROLE_NAMES, roles_sync

    if Group.objects.filter(name__in=ROLE_NAMES).count() != len(ROLE_NAMES):
        roles_sync(apps)


@pytest.fixture(autouse=True)
def _cache_cleared() -> None:
    """Sign-in failures and API throttling count in the cache: each test starts from none
    (every test client comes from 127.0.0.1, one address for the lockout); so do the
    circuit breakers' states a worker remembers for a second."""
    from django.core.cache import cache

    from orchestration.workflows.resilience import circuit_cache_clear

    cache.clear()
    # what this process remembers of the breakers' rows, which the last test rolled back
    circuit_cache_clear()


@pytest.fixture
def system_actor(db: Any) -> Actor:
    return Actor.system("worker")


@pytest.fixture
def make_user(db: Any):  # type: ignore[no-untyped-def]
    def make(username: str, role: str | None = None, **extra: Any) -> Any:
        user = get_user_model().objects.create_user(username=username, password="pw", **extra)
        if role:  # the groups exist: _role_groups restores them for every database test
            user.groups.add(Group.objects.get(name=role))
        return user

    return make
