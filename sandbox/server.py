"""The sandbox over HTTP: a threading ``http.server`` in front of ``Sandbox.handle``."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sandbox.app import Request, Sandbox, json_outcome

logger = logging.getLogger(__name__)

# An idle keep-alive connection frees its thread after this long.
IDLE_CONNECTION_TIMEOUT_S = 120
# How often the serving loop checks for a shutdown request.
SHUTDOWN_POLL_S = 0.05


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TandemSandbox/1.0"
    sys_version = ""
    timeout = IDLE_CONNECTION_TIMEOUT_S
    # Headers and body leave in separate writes: with Nagle on, the body waits for the
    # client's delayed ACK and every answer takes ~40 ms on loopback.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > sandbox.config.max_body_bytes:
            self.close_connection = True
            self._send(json_outcome(413, {"error": "request body too large or malformed"}))
            return
        body = self.rfile.read(length) if length else b""
        outcome = sandbox.handle(Request(self.command, self.path, self.headers, body))
        if outcome.lose:
            # The effect is committed; the client never hears about it.
            if outcome.hold_s:
                sandbox.stopping.wait(outcome.hold_s)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(outcome)

    def _send(self, outcome) -> None:  # type: ignore[no-untyped-def]
        self.send_response(outcome.status)
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(outcome.body)))
        self.end_headers()
        if outcome.body and self.command != "HEAD":
            self.wfile.write(outcome.body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections park their threads; never wait for them when closing.
    block_on_close = False
    sandbox: Sandbox


class SandboxServer:
    """Serve ``sandbox`` on ``host:port`` (port 0 picks a free one; see ``url``)."""

    def __init__(self, sandbox: Sandbox, *, host: str = "127.0.0.1", port: int = 8100) -> None:
        self.sandbox = sandbox
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sandbox = sandbox
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve from a background thread."""
        self.sandbox.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve from this thread until ``stop`` is called from another one (or a signal)."""
        self.sandbox.start()
        self._httpd.serve_forever(poll_interval=SHUTDOWN_POLL_S)

    def stop(self) -> None:
        self.sandbox.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
