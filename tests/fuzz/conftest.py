"""Property-based and fuzz tests (Hypothesis): shared settings and strategies.

CI runs ``EXAMPLES`` examples per property (scaled by ``TANDEM_FUZZ_SCALE``, e.g. 10 for a
deeper run by hand); derandomized, so a CI failure reproduces, and without Hypothesis'
example database, so a run leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("TANDEM_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )  # fmt: skip


# JSON values: what a hostile sender can put in a body.
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)


def mutations_of(document: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``document`` with some of its fields (at any depth) replaced by arbitrary JSON or
    removed: valid-ish payloads that reach far into a parser before anything is wrong."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                paths.append((*path, key))
                walk(item, (*path, key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                paths.append((*path, index))
                walk(item, (*path, index))

    walk(document, ())
    frozen = json.dumps(document)

    @st.composite
    def mutated(draw: st.DrawFn) -> dict[str, Any]:
        copy = json.loads(frozen)
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            path = draw(st.sampled_from(paths))
            parent = copy
            try:
                for step in path[:-1]:
                    parent = parent[step]
                if draw(st.booleans()) and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = draw(json_values | hostile_strings)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced this path's parent
        return copy

    return mutated()


# Strings the code has tripped on before: other scripts' digits, trailing newlines,
# impossible dates, huge numbers, NUL, surrogate-free odd Unicode.
hostile_strings = st.sampled_from(
    ["2026-13-45", "2026-02-30T10:00:00Z", "999999999999999.999999", "1e400", "-0", "NaN",
     "GB\n", "\u0665", "\u00b2", "x\x00y", "", " ", "../../x", "%2e%2e", "9" * 40,
     "2026-01-01T00:00:00", "9999-12-31", "0000-01-01"]
) | st.text(max_size=30)  # fmt: skip


@pytest.fixture
def webhook_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from core.records import SYSTEMS

    secrets = {system: f"whsec_fuzz_{system}" for system in SYSTEMS}
    for system, secret in secrets.items():
        monkeypatch.setenv(f"WEBHOOK_SECRET_{system.upper()}", secret)
    return secrets
