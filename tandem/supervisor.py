"""Run a few child processes as one unit: start together, stop together, die together.

Used by ``manage.py demo`` for the web server and the Celery worker (and whatever else the
demo needs). Each child runs in its own session, so a Ctrl-C in the terminal reaches only
the supervisor, which then stops the children in order: SIGTERM to each child's process
group (grandchildren such as an embedded beat included), a grace period, then SIGKILL. A
child marked ``restart`` (the Celery worker) that dies is started again, what it left in its
process group killed first, up to ``RESTARTS_ALLOWED`` times within ``RESTART_WINDOW_SECONDS``
(a crash loop stops the demo instead). If any other child exits on its own, the others are
stopped too and the exit is reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import IO, Protocol

RESTARTS_ALLOWED = 5
RESTART_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class ChildSpec:
    """A child process: a short name for its output prefix and the command line; ``restart``:
    started again when it dies instead of stopping the others."""

    name: str
    argv: list[str]
    restart: bool = False


class _Writer(Protocol):
    def write(self, msg: str) -> object: ...


@dataclass(frozen=True)
class Outcome:
    """Why the supervisor stopped: a signal (``signal_name``) or a child exiting on its own."""

    signal_name: str | None = None
    exited_child: str | None = None
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.signal_name is not None


class Supervisor:
    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        env: Mapping[str, str],
        cwd: str | os.PathLike[str],
        out: _Writer,
        stop_timeout: float = 10.0,
    ) -> None:
        if not specs:
            raise ValueError("nothing to supervise")
        self.specs = specs
        self.env = dict(env)
        self.cwd = cwd
        self.out = out
        self.stop_timeout = stop_timeout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []
        self._write_lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._signal_name: str | None = None
        self._width = max(len(spec.name) for spec in specs)
        self._restarts: dict[str, deque[float]] = {spec.name: deque() for spec in specs}
        self.restart_count: dict[str, int] = {spec.name: 0 for spec in specs}
        self._restart_lock = threading.Lock()

    # --- output ---------------------------------------------------------------------------

    def say(self, text: str, *, name: str = "") -> None:
        """Write lines to the output, prefixed with the child's name (thread-safe)."""
        with self._write_lock:
            for line in text.splitlines() or [""]:
                self.out.write((f"{name:>{self._width}} | {line}" if name else line) + "\n")

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(raw.decode("utf-8", errors="replace").rstrip("\r\n"), name=name)
        stream.close()

    # --- signals --------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal_name is None:
            self._signal_name = signal.Signals(signum).name
        self._stop_requested.set()

    @contextlib.contextmanager
    def signals_handled(self) -> Iterator[None]:
        """While inside, SIGINT and SIGTERM ask the supervisor to stop instead of raising."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def request_stop(self) -> None:
        self._stop_requested.set()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for spec in self.specs:
            self._spawn(spec)

    def _spawn(self, spec: ChildSpec) -> None:
        process = subprocess.Popen(  # noqa: S603 (our own fixed command lines)
            spec.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[spec.name] = process
        assert process.stdout is not None
        pump = threading.Thread(target=self._pump, args=(spec.name, process.stdout), daemon=True)
        pump.start()
        self._pumps.append(pump)

    def _may_restart(self, spec: ChildSpec) -> bool:
        """Whether ``spec`` is restartable and has not used up its restarts in the window."""
        if not spec.restart or self._stop_requested.is_set():
            return False
        recent = self._restarts[spec.name]
        while recent and recent[0] < time.monotonic() - RESTART_WINDOW_SECONDS:
            recent.popleft()
        return len(recent) < RESTARTS_ALLOWED

    def restart_crashed(self) -> list[str]:
        """Start again every restartable child that died (within its budget); their names."""
        restarted = []
        with self._restart_lock:
            for spec in self.specs:
                process = self.processes.get(spec.name)
                if process is None or process.poll() is None or not self._may_restart(spec):
                    continue
                # What it left in its group (an embedded beat, pool processes) goes with it.
                _signal_group(process, signal.SIGKILL)
                self._restarts[spec.name].append(time.monotonic())
                self.restart_count[spec.name] += 1
                self.say(
                    f"exited with code {process.returncode}; starting it again", name=spec.name
                )
                self._spawn(spec)
                restarted.append(spec.name)
        return restarted

    def exited(self) -> tuple[str, int] | None:
        """The first child (in start order) that has exited and will not be started again,
        with its code, or None."""
        for spec in self.specs:
            process = self.processes.get(spec.name)
            code = process.poll() if process is not None else None
            if code is not None and not self._may_restart(spec):
                return spec.name, code
        return None

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, poll: float = 0.25) -> bool:
        """Wait for ``ready()``; False on timeout, a stop request, or a child exiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.restart_crashed()
            if self._stop_requested.is_set() or self.exited() is not None:
                return False
            if ready():
                return True
            self._stop_requested.wait(poll)
        return False

    def wait(self, *, poll: float = 0.25) -> Outcome:
        """Block until a signal asks us to stop or a child that is not restarted exits on its
        own; a restartable child that dies is started again meanwhile."""
        while True:
            if self._stop_requested.is_set():
                return Outcome(signal_name=self._signal_name or "stop requested")
            self.restart_crashed()
            died = self.exited()
            if died is not None:
                return Outcome(exited_child=died[0], exit_code=died[1])
            self._stop_requested.wait(poll)

    def stop(self) -> None:
        """Terminate every child's process group, wait, then kill what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"did not stop within {self.stop_timeout:g}s; killing it", name=name)
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # Anything the child left behind in its group (an embedded beat, a pool process).
            _signal_group(process, signal.SIGKILL)
        for pump in self._pumps:
            pump.join(timeout=2)

    def run(self, *, on_ready: Callable[[], None] | None = None) -> Outcome:
        """Start, call ``on_ready`` once started, wait, and always stop the children."""
        with self.signals_handled():
            try:
                self.start()
                if on_ready is not None:
                    on_ready()
                return self.wait()
            finally:
                self.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
