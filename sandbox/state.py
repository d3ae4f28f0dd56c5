"""The sandbox's own state: plain JSON-able dicts, optionally persisted to one JSON file.

Every system keeps collections of records (``id -> record``, in creation order); collections
whose name starts with ``_`` are internal (schedules, lookups) and are left out of dumps. The
idempotency store and the webhook outbox live here too, so a restart neither re-executes a
replayed request nor forgets an undelivered event. The caller holds the sandbox lock around
every read and write.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FORMAT_VERSION = 1


@dataclass
class SandboxState:
    systems: dict[str, dict[str, dict[str, Any]]]
    counters: dict[str, int] = field(default_factory=dict)
    idempotency: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def empty(cls, collections: dict[str, tuple[str, ...]]) -> SandboxState:
        return cls(
            systems={system: {name: {} for name in names} for system, names in collections.items()},
            idempotency={system: {} for system in collections},
        )

    def next_number(self, name: str) -> int:
        value = self.counters.get(name, 0) + 1
        self.counters[name] = value
        return value

    def public_collections(self, system: str) -> dict[str, dict[str, Any]]:
        return {
            name: records
            for name, records in self.systems[system].items()
            if not name.startswith("_")
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_FORMAT_VERSION,
            "systems": self.systems,
            "counters": self.counters,
            "idempotency": self.idempotency,
            "webhooks": self.webhooks,
        }

    @classmethod
    def from_json(
        cls, payload: dict[str, Any], collections: dict[str, tuple[str, ...]]
    ) -> SandboxState:
        if payload.get("version") != STATE_FORMAT_VERSION:
            raise ValueError(f"unsupported state file version {payload.get('version')!r}")
        state = cls.empty(collections)
        for system, stored in payload.get("systems", {}).items():
            if system in state.systems:
                for name, records in stored.items():
                    state.systems[system][name] = dict(records)
        state.counters = {str(k): int(v) for k, v in payload.get("counters", {}).items()}
        for system, keys in payload.get("idempotency", {}).items():
            if system in state.idempotency:
                state.idempotency[system] = dict(keys)
        state.webhooks = dict(payload.get("webhooks", {}))
        return state


def state_save(payload: str, path: Path) -> None:
    """Write a serialized state to ``path`` atomically: a crash leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def state_load(path: Path, collections: dict[str, tuple[str, ...]]) -> SandboxState:
    """The state saved at ``path``, or an empty state when the file does not exist yet."""
    if not path.exists():
        return SandboxState.empty(collections)
    return SandboxState.from_json(json.loads(path.read_text(encoding="utf-8")), collections)
