"""Register the test workflow for every test here, and forget its planned failures after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestration.workflows import engine
from tests.exceptions.helpers import FLOW, KIND, planned


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    engine.workflow_register(FLOW)
    planned.clear()
    yield
    planned.clear()
    engine.REGISTRY.pop(KIND, None)
