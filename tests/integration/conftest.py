"""Fixtures that run real Celery workers for integration tests.

``start_worker()`` launches a worker (see ``tests.integration.workers``), waits until it
answers a ping and has run a heartbeat task end to end, and returns a handle that can stop
it gracefully, SIGKILL it, or show its log. A test may start several workers one after
another (kill one, start a fresh one); every worker still running is stopped at teardown,
and the logs of all of them are printed when the test failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.q2c_env import Rig, catalog_seed, rig_start, system_environment
from tests.integration.workers import WorkerHandle, broker_flush, worker_start
from tests.sandbox.helpers import SandboxClient


@pytest.fixture
def start_worker(
    transactional_db: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerHandle]]:
    """A factory: ``start_worker()`` launches a real worker and returns its handle once ready.

    The broker is flushed once, when the fixture is set up, so messages left by a worker a
    test killed stay queued for the next worker the same test starts.
    """
    broker_flush()
    started: list[WorkerHandle] = []

    def start(
        *, concurrency: int = 2, extra_env: dict[str, str] | None = None, wait: bool = True
    ) -> WorkerHandle:
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        handle = worker_start(log_path=log_path, concurrency=concurrency, extra_env=extra_env)
        started.append(handle)
        if wait:
            handle.wait_ready()
        return handle

    yield start

    for handle in started:
        handle.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for handle in started:
            print(f"\n--- log of worker {handle.hostname} (pid {handle.pid}) ---\n{handle.log()}")


@pytest.fixture
def celery_worker_process(start_worker: Callable[..., WorkerHandle]) -> WorkerHandle:
    """One running worker on every Tandem queue."""
    return start_worker()


def rig_serve(
    live_server: Any,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    worker_env: dict[str, str] | None = None,
) -> Iterator[Rig]:
    """The sandbox, live Tandem and one worker (with ``worker_env`` on top), for a fixture
    to yield from; stopped when the fixture ends."""
    server = rig_start(live_server_url=live_server.url)
    env = system_environment(server.url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the webhook endpoint reads its secrets per request
    catalog_seed()
    start_worker(extra_env={**env, **(worker_env or {})}, concurrency=4)
    client = SandboxClient(server)
    yield Rig(sandbox=client, env=env)
    client.http.close()
    server.stop()


@pytest.fixture
def rig(  # the whole quote-to-cash rig: sandbox, live Tandem, one worker
    live_server: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    yield from rig_serve(live_server, start_worker, monkeypatch)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
