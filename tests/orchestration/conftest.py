"""Fixtures for orchestration tests: a fake remote system on a real loopback socket."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0


class RemoteSystem:
    """An HTTP server in a thread: records every request and answers as told."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answer = Answer()
        self.release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.remote = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def respond(
        self,
        status: int,
        *,
        json_body: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        hold_seconds: float = 0.0,
    ) -> None:
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        else:
            body = (text or "").encode()
            content_type = "text/plain"
        self.answer = Answer(
            status=status,
            body=body,
            headers={"Content-Type": content_type, **(headers or {})},
            hold_seconds=hold_seconds,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        remote: RemoteSystem = self.server.remote  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        remote.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
        answer = remote.answer
        if answer.hold_seconds:
            remote.release.wait(answer.hold_seconds)
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a read timeout): nothing to answer

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def remote() -> Iterator[RemoteSystem]:
    system = RemoteSystem()
    system.start()
    yield system
    system.stop()


@pytest.fixture
def erp_connector(settings: Any, remote: RemoteSystem, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the ERP connector at ``remote`` with a credential in the environment."""
    monkeypatch.setenv("CONNECTOR_ERP_API_KEY", "sk_test_erp_123")
    settings.TANDEM_CONNECTORS = {
        **settings.TANDEM_CONNECTORS,
        "erp": {
            "base_url": f"{remote.url}/erp/",
            "credential_env": "CONNECTOR_ERP_API_KEY",
            "connect_timeout": 2.0,
            "read_timeout": 2.0,
            "rate_limit_per_second": 5.0,
        },
    }
    return settings.TANDEM_CONNECTORS["erp"]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def webhook_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    secrets = {"current": "whsec_current_cpq", "previous": "whsec_previous_cpq"}
    monkeypatch.setenv("WEBHOOK_SECRET_CPQ", secrets["current"])
    monkeypatch.setenv("WEBHOOK_SECRET_CPQ_PREVIOUS", secrets["previous"])
    monkeypatch.setenv("WEBHOOK_SECRET_BILLING", "whsec_billing")
    return secrets
