"""Register the test workflow for every test here, and forget its planned failures after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestration.workflows import engine
from tests.exceptions.helpers import FLOW, KIND, planned


@pytest.fixture(autouse=True)
def _roles(request: pytest.FixtureRequest) -> None:
    """The role groups, which a transactional test run before this one (in this session or
    a reused database) may have flushed away."""
    if "django_db" not in {mark.name for mark in request.node.iter_markers()}:
        return
    request.getfixturevalue("db")
    from django.apps import apps
    from django.contrib.auth.models import Group

    from q2c.roles import ROLE_NAMES, roles_sync

    if Group.objects.filter(name__in=ROLE_NAMES).count() != len(ROLE_NAMES):
        roles_sync(apps)


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    engine.workflow_register(FLOW)
    planned.clear()
    yield
    planned.clear()
    engine.REGISTRY.pop(KIND, None)
