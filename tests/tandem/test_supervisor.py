from __future__ import annotations

import sys
import threading
from io import StringIO

from tandem.supervisor import ChildSpec, Outcome, Supervisor

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
