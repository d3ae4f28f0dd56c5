"""A real Tryton server on loopback for the tests, built from the pinned, saved database.

``tryton_environment()`` makes sure the Tryton virtualenv (var/tryton-venv) exists with the
hash-pinned requirements-tryton.txt, and that the saved database matches them and
scripts/tryton_setup.py (a stale one is rebuilt with that script into var/, with a note to
commit it).
``tryton_start()`` restores the saved database into a fresh directory, starts ``trytond`` on
a free 127.0.0.1 port, waits until it answers a login, and returns a handle that stops it by
its PID. Nothing here imports Tryton: the tests talk to it over HTTP like Tandem does.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements-tryton.txt"
SETUP = ROOT / "scripts" / "tryton_setup.py"  # a change to it rebuilds the saved database
VENV = ROOT / "var" / "tryton-venv"
SAVED = ROOT / "tests" / "realsystems" / "tryton"
REBUILT = ROOT / "var" / "tryton-db"
DATABASE = "tandem"
LOGIN = "tandem"
PASSWORD = "tandem-test-only"  # the saved test database's connector user
START_DEADLINE_S = 90.0


def _requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _stamp_matches(directory: Path) -> bool:
    stamp = directory / "stamp.json"
    if not stamp.is_file() or not (directory / "tryton.sqlite.gz").is_file():
        return False
    saved = json.loads(stamp.read_text())
    return (saved.get("requirements_sha256"), saved.get("setup_sha256")) == (
        _requirements_hash(),
        hashlib.sha256(SETUP.read_bytes()).hexdigest(),
    )


def venv_ensure() -> Path:
    """The Tryton virtualenv's bin directory, created and installed when missing or stale
    (once: parallel test processes wait for the one installing it)."""
    marker = VENV / f".installed-{_requirements_hash()[:16]}"
    with install_lock("tryton-venv"):
        if not marker.is_file():
            _venv_install(marker)
    return VENV / "bin"


def _venv_install(marker: Path) -> None:
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", "--clear", str(VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603 (fixed argument list)
        [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip
    marker.touch()


@contextlib.contextmanager
def install_lock(name: str) -> Iterator[None]:
    """An exclusive lock across test processes (pytest-xdist) on ``var/<name>.lock``."""
    path = ROOT / "var" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def saved_database() -> Path:
    """The directory holding the saved database for the pinned versions (rebuilt if stale)."""
    if _stamp_matches(SAVED):
        return SAVED
    with install_lock("tryton-db"):
        _rebuild_when_stale()
    return REBUILT


def _rebuild_when_stale() -> None:
    if not _stamp_matches(REBUILT):
        bin_dir = venv_ensure()
        subprocess.run(  # noqa: S603 (fixed argument list)
            [str(bin_dir / "python"), str(ROOT / "scripts" / "tryton_setup.py"),
             "--output", str(REBUILT)],
            check=True,
        )  # fmt: skip
        print(
            "\nrequirements-tryton.txt or scripts/tryton_setup.py changed: rebuilt the Tryton "
            f"database in {REBUILT}; run `make tryton-db` and commit tests/realsystems/tryton/ "
            "to keep it.",
            file=sys.stderr,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TrytonServer:
    """One running ``trytond``: its URL, the connector user, its database file and PID."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """What CONNECTOR_ERP_BASE_URL is set to."""
        return f"{self.url}/{DATABASE}/"

    @property
    def database_path(self) -> Path:
        return self.directory / f"{DATABASE}.sqlite"

    @property
    def login(self) -> str:
        return LOGIN

    @property
    def password(self) -> str:
        return PASSWORD

    def environment(self) -> dict[str, str]:
        """The settings that point Tandem's ERP connector at this server."""
        return {
            "CONNECTOR_ERP_IMPLEMENTATION": "orchestration.connectors.tryton.erp.TrytonErp",
            "CONNECTOR_ERP_BASE_URL": self.database_url,
            "CONNECTOR_ERP_LOGIN": LOGIN,
            "CONNECTOR_ERP_PASSWORD": PASSWORD,
        }

    def sql(self, statement: str, *args: object) -> list[tuple[object, ...]]:
        """Run SQL on the server's own database file (to check or to break what it stores)."""
        with sqlite3.connect(self.database_path, timeout=30) as db:
            rows = db.execute(statement, args).fetchall()
        return list(rows)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            if not self.is_running():
                raise RuntimeError(f"trytond exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = requests.post(
                    f"{self.database_url}rpc/",
                    json={"id": 0, "method": "common.db.login",
                          "params": [LOGIN, {"password": PASSWORD}, "en"]},
                    timeout=5,
                )  # fmt: skip
                if response.ok and isinstance(response.json().get("result"), list):
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"trytond did not answer in time:\n{self.log()}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.is_running():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def tryton_start(directory: Path) -> TrytonServer:
    """Restore the saved database into ``directory`` and start ``trytond`` on loopback."""
    bin_dir = venv_ensure()
    saved = saved_database()
    directory.mkdir(parents=True, exist_ok=True)
    with (
        gzip.open(saved / "tryton.sqlite.gz", "rb") as source,
        (directory / f"{DATABASE}.sqlite").open("wb") as target,
    ):
        shutil.copyfileobj(source, target)
    port = _free_port()
    conf = directory / "trytond.conf"
    conf.write_text(
        f"[database]\nuri = sqlite://\npath = {directory}\n\n"
        f"[web]\nlisten = 127.0.0.1:{port}\n\n[session]\ntimeout = 3600\n"
    )
    log_path = directory / "trytond.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 (fixed argument list)
            [str(bin_dir / "trytond"), "-c", str(conf), "-d", DATABASE],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    server = TrytonServer(process=process, port=port, directory=directory, log_path=log_path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server
