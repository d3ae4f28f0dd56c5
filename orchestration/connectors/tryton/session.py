"""Sessions and calls to Tryton's JSON-RPC endpoint (``<database URL>/rpc/``).

``common.db.login`` gives a token, sent as ``Authorization: Session …`` (Basic auth would
re-check the password on every call). The user comes from ``CONNECTOR_ERP_LOGIN`` and
``CONNECTOR_ERP_PASSWORD`` (or ``*_FILE``), read when a session is opened and never stored.
One session per process, database and user is cached; a 401 drops it, logs in again and
retries the call once. Every call goes through the shared ``Transport`` (timeouts, rate
limit, ``OutboundCall`` rows) with ``rpc_error`` classing Tryton's errors.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.env import envstr
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.transport import Transport
from orchestration.connectors.tryton.codec import WARNING_NAME, rpc_decode, rpc_encode, rpc_error
from orchestration.models import OutboundCall

SYSTEM = "erp"
RPC_PATH = "rpc/"  # relative to the database URL
# Transport error classes of a request that was sent but got no answer: it may still commit.
UNANSWERED = ("timeout", "connection_error")


@dataclass(frozen=True)
class Session:
    user_id: int
    authorization: str
    context: dict[str, Any]


_sessions: dict[tuple[str, str], Session] = {}
_sessions_lock = threading.Lock()


def sessions_forget() -> None:
    """Drop every cached session (a process that forks, or a test)."""
    with _sessions_lock:
        _sessions.clear()


class TrytonRpc:
    """A Tryton database reached through ``transport``, as the configured user."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)
        self._cache: dict[str, Any] = {}
        self._company: int | None = None  # None: the connector user's current company

    @contextlib.contextmanager
    def in_company(self, company_id: int | None) -> Iterator[None]:
        """Calls made inside run in Tryton company ``company_id`` (its defaults, accounts and
        taxes); None keeps the user's current company."""
        before = self._company
        self._company = int(company_id) if company_id else before
        try:
            yield
        finally:
            self._company = before

    def cache_key(self, name: str) -> str:
        """``name`` for the company calls run in now (accounts and taxes are per company)."""
        return f"{self._company or 0}:{name}"

    def settled(self, operation: str, idempotency_key: str) -> None:
        """Raise a waiting ``RetryableError`` while an earlier ``operation`` with this key that
        got no answer may still commit in Tryton.

        A search cannot see a create that is still running (its answer timed out, its
        transaction has not committed), and Tryton has no unique constraint on references:
        so after a create with the same idempotency key got no answer, no second one is sent
        until ``settings.TRYTON_SETTLE_SECONDS`` have passed."""
        settle = float(settings.TRYTON_SETTLE_SECONDS)
        if not idempotency_key or settle <= 0:
            return
        now = timezone.now()
        sent = (
            OutboundCall.objects.filter(
                system=SYSTEM,
                operation=operation,
                idempotency_key=idempotency_key,
                error_class__in=UNANSWERED,
                created_at__gte=now - dt.timedelta(seconds=settle),
            )
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if sent is None:
            return
        wait = max(1, math.ceil((sent + dt.timedelta(seconds=settle) - now).total_seconds()))
        raise RetryableError(
            f"an earlier {operation} sent at {sent.astimezone(dt.UTC):%H:%M:%S} UTC got no "
            f"answer and may still commit in Tryton; looking again in {wait} s",
            system=SYSTEM,
            kind="outcome_unknown",
            retry_after=wait,
            waiting=True,
        )

    def one(self, model: str, domain: list[Any], what: str) -> int:
        """The id of the first ``model`` record matching ``domain`` (cached per company);
        ``PermanentError`` (``not_found``) when there is none."""
        key = self.cache_key(f"{model}:{domain!r}")
        if key not in self._cache:
            found = self.rpc(
                f"{model.split('.')[-1]}_lookup", f"model.{model}.search", [domain, 0, 1, None]
            )
            if not found:
                raise PermanentError(f"Tryton has no {what}", system=SYSTEM, kind="not_found")
            self._cache[key] = int(found[0])
        return int(self._cache[key])

    @property
    def login(self) -> str:
        """The Tryton user's login (``CONNECTOR_ERP_LOGIN``), read when needed."""
        return envstr("CONNECTOR_ERP_LOGIN", "")

    def _session_key(self) -> tuple[str, str]:
        return (self.transport.config.base_url, self.login)

    def session(self) -> Session:
        """The cached session of this process, or a new one."""
        key = self._session_key()
        with _sessions_lock:
            cached = _sessions.get(key)
        if cached is not None:
            return cached
        login, password = self.login, envstr("CONNECTOR_ERP_PASSWORD", "")
        if not login or not password:
            raise PermanentError(
                "CONNECTOR_ERP_LOGIN and CONNECTOR_ERP_PASSWORD must be set for Tryton",
                system=SYSTEM,
                kind="auth",
            )
        response = self.transport.call(
            operation="login",
            method="POST",
            path=RPC_PATH,
            json={
                "id": 1,
                "method": "common.db.login",
                "params": [login, {"password": password}, "en"],
            },
            body_error=rpc_error,
            response_secret=True,
        )
        result = response.body.get("result") if isinstance(response.body, dict) else None
        if not isinstance(result, list) or len(result) < 2:
            raise PermanentError("Tryton refused the login", system=SYSTEM, kind="auth")
        user_id, token = int(result[0]), str(result[1])
        secret = base64.b64encode(f"{login}:{user_id}:{token}".encode()).decode()
        authorization = f"Session {secret}"
        preferences = self._call(
            "preferences", "model.res.user.get_preferences", [True], authorization, context={}
        )
        context = {
            key: preferences[key]
            for key in ("company", "language", "companies", "employee", "employees")
            if key in preferences
        }
        session = Session(user_id=user_id, authorization=authorization, context=context)
        with _sessions_lock:
            _sessions[key] = session
        return session

    def _call(
        self,
        operation: str,
        method: str,
        params: list[Any],
        authorization: str,
        *,
        context: dict[str, Any],
        idempotency_key: str = "",
    ) -> Any:
        response = self.transport.call(
            operation=operation,
            method="POST",
            path=RPC_PATH,
            json={"id": 1, "method": method, "params": rpc_encode([*params, context])},
            headers={"Authorization": authorization},
            idempotency_key=idempotency_key,
            body_error=rpc_error,
        )
        return rpc_decode(response.body.get("result"))

    def rpc(
        self,
        operation: str,
        method: str,
        params: list[Any],
        *,
        idempotency_key: str = "",
        context: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` with the session's context last (in the company of ``in_company``);
        a 401 renews the session once."""
        session = self.session()
        if self._company is not None:
            context = {"company": self._company, **(context or {})}
        try:
            return self._call(
                operation,
                method,
                params,
                session.authorization,
                context={**session.context, **(context or {})},
                idempotency_key=idempotency_key,
            )
        except PermanentError as exc:
            if exc.status != 401:
                raise
        with _sessions_lock:
            if _sessions.get(self._session_key()) is session:
                del _sessions[self._session_key()]
        session = self.session()
        return self._call(
            operation,
            method,
            params,
            session.authorization,
            context={**session.context, **(context or {})},
            idempotency_key=idempotency_key,
        )

    def button(self, model: str, name: str, ids: list[int], *, operation: str = "") -> None:
        """Click a workflow button, acknowledging a warning once (as the Tryton client does)."""
        try:
            self.rpc(operation or f"{model.split('.')[-1]}_{name}", f"model.{model}.{name}", [ids])
        except PermanentError as exc:
            match = WARNING_NAME.search(exc.message)
            if exc.kind != "user_warning" or match is None:
                raise
            self.rpc("warning_skip", "model.res.user.warning.skip", [match["name"]])
            self.rpc(operation or f"{model.split('.')[-1]}_{name}", f"model.{model}.{name}", [ids])

    def search_read(
        self,
        model: str,
        domain: list[Any],
        fields: list[str],
        *,
        operation: str,
        limit: int | None = None,
        order: list[list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``model`` matching ``domain`` with ``fields`` (Tryton's ``search_read``).
        Reads only; raises what ``rpc`` raises.
        """
        rows = self.rpc(operation, f"model.{model}.search_read", [domain, 0, limit, order, fields])
        return list(rows or [])
