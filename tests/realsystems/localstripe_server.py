"""localstripe, a stateful Stripe emulator, run on loopback for the billing tests.

localstripe lives in its own virtualenv (``var/localstripe-venv``, from the hash-pinned
``requirements-localstripe.txt``): it pulls aiohttp and friends that Tandem does not need.
``localstripe_venv_ensure`` builds that venv when it is missing or the requirements changed,
so a fresh checkout (CI, ``make test``) runs these tests instead of skipping them.
``localstripe_start`` runs it on a free 127.0.0.1 port and ``LocalStripe.stop`` ends it by PID.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings

from tests.realsystems.tryton_server import install_lock

REQUIREMENTS = Path(settings.BASE_DIR) / "requirements-localstripe.txt"
MAIN = Path(__file__).with_name("localstripe_main.py")
API_KEY = "sk_test_tandem_localstripe"
WEBHOOK_SECRET = "whsec_tandem_localstripe"
READY_DEADLINE_S = 30.0


def localstripe_venv_ensure() -> Path:
    """The localstripe venv's python, (re)built when the pinned requirements changed (once:
    parallel test processes wait for the one installing it)."""
    venv = Path(settings.BASE_DIR) / "var" / "localstripe-venv"
    with install_lock("localstripe-venv"):
        return _venv_ready(venv)


def _venv_ready(venv: Path) -> Path:
    python = venv / "bin" / "python"
    stamp = venv / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603 (fixed arguments, hash-pinned requirements)
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip
    stamp.write_text(wanted + "\n")
    return python


def stripe_environment(server: LocalStripe) -> dict[str, str]:
    """The settings that make Tandem (and a worker) bill through Stripe at ``server``."""
    return {
        "CONNECTOR_BILLING_IMPLEMENTATION": "orchestration.connectors.stripe.billing.StripeBilling",
        "CONNECTOR_BILLING_BASE_URL": server.url,
        "CONNECTOR_BILLING_API_KEY": API_KEY,
        "WEBHOOK_SIGNATURE_BILLING": "stripe",
        "WEBHOOK_SECRET_BILLING": WEBHOOK_SECRET,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str, **params: object) -> dict[str, object]:
        """A record as localstripe itself holds it (not through Tandem's connector)."""
        response = requests.get(f"{self.url}{path}", params=params, auth=(API_KEY, ""), timeout=10)
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data

    def post(self, path: str, data: dict[str, object]) -> dict[str, object]:
        response = requests.post(f"{self.url}{path}", data=data, auth=(API_KEY, ""), timeout=10)
        response.raise_for_status()
        return response.json() if response.content else {}

    def delete(self, path: str) -> dict[str, object]:
        """Delete (cancel) a record in localstripe itself, as someone in Stripe's dashboard."""
        response = requests.delete(f"{self.url}{path}", auth=(API_KEY, ""), timeout=10)
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data

    def flush(self) -> None:
        """Forget every object (between tests)."""
        requests.delete(f"{self.url}/_config/data", timeout=10).raise_for_status()

    def webhook_register(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """Have localstripe sign its events with ``secret`` and POST them to ``url``."""
        response = requests.post(
            f"{self.url}/_config/webhooks/tandem", data={"url": url, "secret": secret}, timeout=10
        )
        response.raise_for_status()

    def card_on_file(self, customer_id: str) -> str:
        """Give the customer a default test card, as Stripe Checkout would; returns its id."""
        method = self.post(
            "/v1/payment_methods",
            {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
             "card[exp_year]": "2040", "card[cvc]": "123"},
        )  # fmt: skip
        method_id = str(method["id"])
        self.post(f"/v1/payment_methods/{method_id}/attach", {"customer": customer_id})
        self.post(
            f"/v1/customers/{customer_id}",
            {"invoice_settings[default_payment_method]": method_id},
        )
        return method_id

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def localstripe_start(*, log_path: Path) -> LocalStripe:
    """Start localstripe on a free loopback port and wait until it answers."""
    python = localstripe_venv_ensure()
    port = _free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 (our own script, fixed arguments)
            [str(python), str(MAIN), str(port)], stdout=log_file, stderr=subprocess.STDOUT
        )
    server = LocalStripe(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + READY_DEADLINE_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}:\n{server.log()}")
        try:
            server.get("/v1/customers", limit=1)
            return server
        except requests.RequestException:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"localstripe did not answer in time:\n{server.log()}") from None
            time.sleep(0.2)
