from __future__ import annotations

import os
import signal
import sys
import threading
import time
from io import StringIO

from tandem.supervisor import RESTARTS_ALLOWED, ChildSpec, Outcome, Supervisor

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def test_a_stop_request_stops_every_child_and_reports_the_signal(tmp_path):
    # given
    out = StringIO()
    supervisor = Supervisor(
        [ChildSpec("one", SLEEPER), ChildSpec("two", SLEEPER)],
        env={},
        cwd=tmp_path,
        out=out,
        stop_timeout=5,
    )

    def stop_when_both_run() -> None:
        supervisor.wait_until(lambda: out.getvalue().count("| up") == 2, timeout=20)
        supervisor.request_stop()

    # when
    outcome = supervisor.run(on_ready=lambda: threading.Thread(target=stop_when_both_run).start())
    # then
    assert outcome == Outcome(signal_name="stop requested")
    assert [p.poll() for p in supervisor.processes.values()] == [-15, -15]
    assert sorted(out.getvalue().splitlines()) == ["one | up", "two | up"]


def test_a_child_that_exits_stops_the_others_and_reports_its_code(tmp_path):
    # given
    failing = [sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"]
    supervisor = Supervisor(
        [ChildSpec("web", SLEEPER), ChildSpec("worker", failing)],
        env={},
        cwd=tmp_path,
        out=StringIO(),
        stop_timeout=5,
    )
    # when
    outcome = supervisor.run()
    # then
    assert outcome == Outcome(exited_child="worker", exit_code=3)
    assert outcome.ok is False
    assert [p.poll() for p in supervisor.processes.values()] == [-15, 3]


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path):
    # given
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)",
    ]
    out = StringIO()
    supervisor = Supervisor([ChildSpec("stubborn", stubborn)], env={}, cwd=tmp_path, out=out)
    supervisor.stop_timeout = 0.5
    supervisor.start()
    supervisor.wait_until(lambda: "| up" in out.getvalue(), timeout=20)
    # when
    supervisor.stop()
    # then
    assert supervisor.processes["stubborn"].poll() == -9
    assert out.getvalue().splitlines() == [
        "stubborn | up",
        "stubborn | did not stop within 0.5s; killing it",
    ]


def test_a_restartable_child_that_is_killed_is_started_again_and_the_others_keep_running(
    tmp_path,
):
    # given
    out = StringIO()
    supervisor = Supervisor(
        [ChildSpec("web", SLEEPER), ChildSpec("worker", SLEEPER, restart=True)],
        env={},
        cwd=tmp_path,
        out=out,
        stop_timeout=5,
    )
    supervisor.start()
    assert supervisor.wait_until(lambda: out.getvalue().count("| up") == 2, timeout=20)
    killed = supervisor.processes["worker"]
    web = supervisor.processes["web"]
    waited: list[Outcome] = []
    waiting = threading.Thread(target=lambda: waited.append(supervisor.wait(poll=0.05)))
    waiting.start()
    # when
    os.kill(killed.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while out.getvalue().count("worker | up") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    restarted = out.getvalue().count("worker | up") == 2
    supervisor.request_stop()
    waiting.join(timeout=20)
    supervisor.stop()
    # then
    assert restarted is True
    assert killed.poll() == -9
    assert supervisor.processes["worker"].pid != killed.pid
    assert supervisor.processes["web"] is web
    assert supervisor.restart_count == {"web": 0, "worker": 1}
    assert "worker | exited with code -9; starting it again" in out.getvalue().splitlines()
    assert waited == [Outcome(signal_name="stop requested")]


def test_a_restartable_child_that_keeps_crashing_stops_the_others_once_its_restarts_are_used(
    tmp_path,
):
    # given
    crashing = [sys.executable, "-c", "raise SystemExit(4)"]
    supervisor = Supervisor(
        [ChildSpec("web", SLEEPER), ChildSpec("worker", crashing, restart=True)],
        env={},
        cwd=tmp_path,
        out=StringIO(),
        stop_timeout=5,
    )
    # when
    outcome = supervisor.run()
    # then
    assert outcome == Outcome(exited_child="worker", exit_code=4)
    assert supervisor.restart_count == {"web": 0, "worker": RESTARTS_ALLOWED}
    assert supervisor.processes["web"].poll() == -15
