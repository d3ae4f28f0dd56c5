"""Fixtures of the console page tests: a settable clock and a tiny registered workflow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestration.workflows import engine
from tests.console.helpers import Clock
from tests.exceptions.helpers import FLOW, KIND, planned


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def test_flow() -> Iterator[None]:
    """The exception tests' workflow (a step fails as planned), registered for the test."""
    engine.workflow_register(FLOW)
    planned.clear()
    yield
    planned.clear()
    engine.REGISTRY.pop(KIND, None)
