"""A loopback HTTP proxy in front of a real system that loses answers on demand.

Every request is forwarded to the upstream and handled there; for a request a rule matches,
the upstream's answer is thrown away and the connection closed, the first ``times`` times:
the system committed and Tandem never hears of it (a lost response after commit, at the
edge, for a worker in another process). A held request (``hold_requests``) reaches the
upstream only after a delay: to the caller, whose read timeout is shorter, it is a request
still running in the system when the caller gave up, which commits later. Started in a
thread, on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "content-encoding",
               "keep-alive"}  # fmt: skip


@dataclass
class DropRule:
    matches: Callable[[str, str, bytes], bool]  # (method, path, body)
    times: int = 1
    hold_seconds: float = 0.0  # > 0: a hold (forwarded late), not a drop


@dataclass
class LossyProxy:
    upstream: str
    rules: list[DropRule] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def lose_answers(self, matches: Callable[[str, str, bytes], bool], *, times: int = 1) -> None:
        with self.lock:
            self.rules.append(DropRule(matches, times))

    def hold_requests(
        self, matches: Callable[[str, str, bytes], bool], *, seconds: float, times: int = 1
    ) -> None:
        with self.lock:
            self.rules.append(DropRule(matches, times, hold_seconds=seconds))

    def _rule_take(self, method: str, path: str, body: bytes, *, hold: bool) -> DropRule | None:
        with self.lock:
            for rule in self.rules:
                if (rule.hold_seconds > 0) != hold:
                    continue
                if rule.times > 0 and rule.matches(method, path, body):
                    rule.times -= 1
                    return rule
        return None

    def _should_drop(self, method: str, path: str, body: bytes) -> bool:
        if self._rule_take(method, path, body, hold=False) is None:
            return False
        with self.lock:
            self.dropped.append(f"{method} {path}")
        return True

    def _hold(self, method: str, path: str, body: bytes) -> None:
        rule = self._rule_take(method, path, body, hold=True)
        if rule is not None:
            with self.lock:
                self.held.append(f"{method} {path}")
            time.sleep(rule.hold_seconds)

    def start(self) -> LossyProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                proxy._hold(self.command, self.path, body)
                answer = requests.request(
                    self.command, f"{proxy.upstream}{self.path}", data=body, headers=headers,
                    timeout=60, allow_redirects=False,
                )  # fmt: skip
                if proxy._should_drop(self.command, self.path, body):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    self.send_response(answer.status_code)
                    for name, value in answer.headers.items():
                        if name.lower() not in HOP_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up on a held request

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def rpc_method_is(name: str) -> Callable[[str, str, bytes], bool]:
    """Matches a Tryton JSON-RPC call of ``name``."""

    def matches(method: str, path: str, body: bytes) -> bool:
        try:
            return method == "POST" and json.loads(body or b"{}").get("method") == name
        except ValueError:
            return False

    return matches


def stripe_update_of_a_subscription(method: str, path: str, body: bytes) -> bool:
    return method == "POST" and re.fullmatch(r"/v1/subscriptions/sub_[^/?]+", path) is not None
