"""``manage.py sandbox`` as a process: serves, stops on SIGTERM, keeps its state file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BILLING = {"Authorization": "Bearer sk_sandbox_billing"}


def _start(state_file: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tandem.settings_test"}
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "manage.py",
            "sandbox",
            "--port",
            "0",
            "--webhook-url",
            "",
            "--state-file",
            str(state_file),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    assert match, line
    return process, match[1]


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    return output


def test_state_survives_a_restart(tmp_path):
    # given
    state_file = tmp_path / "sandbox.json"
    process, url = _start(state_file)
    try:
        created = requests.post(
            f"{url}/billing/customers",
            json={"name": "Northwind"},
            headers={**BILLING, "Idempotency-Key": "k-1"},
            timeout=10,
        ).json()
    finally:
        output = _stop(process)

    # when
    process, url = _start(state_file)
    try:
        fetched = requests.get(
            f"{url}/billing/customers/{created['id']}", headers=BILLING, timeout=10
        )
        replayed = requests.post(
            f"{url}/billing/customers",
            json={"name": "Northwind"},
            headers={**BILLING, "Idempotency-Key": "k-1"},
            timeout=10,
        )
    finally:
        _stop(process)

    # then
    assert "Sandbox stopped; state saved." in output
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == created
