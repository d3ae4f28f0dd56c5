"""The one HTTP transport every connector uses.

Per call it: refuses to run inside a database transaction (a slow system must never hold
our row locks), sends explicit connect/read timeouts, the ``Idempotency-Key`` when given and
``X-Correlation-Id`` always, follows no redirects, ignores proxy settings from the
environment, classes the outcome (ok, retryable, permanent) and writes one ``OutboundCall``
row with redacted, size-capped bodies. Every log line written during the call carries the
correlation id; no body is ever logged.

Base URLs come from settings (``TANDEM_CONNECTORS``) and must name a host on
``CONNECTOR_ALLOWED_HOSTS``; link-local addresses (cloud metadata) are refused even when
listed. Credentials are read from the environment variable the settings name, at call time,
and are never stored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.env import envstr
from core.logging import correlation, current_correlation_id
from core.redaction import body_for_storage
from orchestration.connectors.errors import (
    CallInsideTransaction,
    ConnectorConfigurationError,
    PermanentError,
    RetryableError,
)
from orchestration.connectors.ratelimit import rate_limit_acquire
from orchestration.models import OutboundCall, OutboundOutcome

logger = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("http", "https")
RETRYABLE_STATUSES = {408, 425, 429}
USER_AGENT = "Tandem/1.0"


@dataclass(frozen=True)
class ConnectorConfig:
    """How to reach one system. Holds the *name* of the credential variable, never its value."""

    system: str
    base_url: str
    credential_env: str = ""
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    rate_limit_per_second: float = 10.0

    def credential(self) -> str:
        """The credential, read from the environment (or ``<NAME>_FILE``) when needed."""
        if not self.credential_env:
            return ""
        return envstr(self.credential_env, "")

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <credential>``, or nothing without a credential."""
        key = self.credential()
        return {"Authorization": f"Bearer {key}"} if key else {}


def base_url_check(url: str, *, allowed_hosts: list[str]) -> None:
    """Raise ``ConnectorConfigurationError`` unless ``url`` may be called at all."""
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        raise ConnectorConfigurationError(
            f"connector URL {url!r}: scheme {parts.scheme!r} is not http or https"
        )
    if parts.username is not None or parts.password is not None:
        raise ConnectorConfigurationError(
            f"connector URL for host {parts.hostname!r} must not carry credentials"
        )
    host = parts.hostname or ""
    if not host:
        raise ConnectorConfigurationError(f"connector URL {url!r} has no host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and (
        address.is_link_local or address.is_multicast or address.is_unspecified
    ):
        raise ConnectorConfigurationError(
            f"connector URL {url!r}: {host} is a link-local, multicast or unspecified address"
        )
    allowed = {name.strip().lower() for name in allowed_hosts if name.strip()}
    if host.lower() not in allowed:
        raise ConnectorConfigurationError(
            f"connector URL {url!r}: host {host!r} is not in CONNECTOR_ALLOWED_HOSTS"
        )
    try:
        parts.port  # noqa: B018  (raises on an out-of-range or non-numeric port)
    except ValueError as exc:
        raise ConnectorConfigurationError(f"connector URL {url!r}: {exc}") from exc


def connector_config(system: str) -> ConnectorConfig:
    """The validated configuration of ``system`` from ``settings.TANDEM_CONNECTORS``."""
    raw: Mapping[str, Any] | None = settings.TANDEM_CONNECTORS.get(system)
    if raw is None:
        raise ConnectorConfigurationError(f"no connector is configured for system {system!r}")
    config = ConnectorConfig(
        system=system,
        base_url=str(raw["base_url"]),
        credential_env=str(raw.get("credential_env", "")),
        connect_timeout=float(raw.get("connect_timeout", 3.05)),
        read_timeout=float(raw.get("read_timeout", 10.0)),
        rate_limit_per_second=float(raw.get("rate_limit_per_second", 10.0)),
    )
    if config.connect_timeout <= 0 or config.read_timeout <= 0:
        raise ConnectorConfigurationError(f"connector {system}: timeouts must be positive")
    base_url_check(config.base_url, allowed_hosts=list(settings.CONNECTOR_ALLOWED_HOSTS))
    return config


def retry_after_parse(value: str | None, *, now: dt.datetime | None = None) -> int | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    delta = (when - (now or timezone.now())).total_seconds()
    return max(0, math.ceil(delta))


def status_class(status: int) -> tuple[str, str]:
    """(outcome, error class) for an HTTP status."""
    if 200 <= status < 300:
        return OutboundOutcome.OK, ""
    if status == 429:
        return OutboundOutcome.RETRYABLE, "rate_limited"
    if status >= 500:
        return OutboundOutcome.RETRYABLE, "server_error"
    if status in RETRYABLE_STATUSES:
        return OutboundOutcome.RETRYABLE, "client_timeout"
    if status in (400, 422):
        return OutboundOutcome.PERMANENT, "validation"
    if status in (401, 403):
        return OutboundOutcome.PERMANENT, "auth"
    if status in (404, 410):
        return OutboundOutcome.PERMANENT, "not_found"
    if 300 <= status < 400:
        return OutboundOutcome.PERMANENT, "redirect"
    return OutboundOutcome.PERMANENT, "client_error"


def _error_message(body: Any, fallback: str) -> str:
    """The system's own explanation, if its error body has one (never the whole body)."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # Salesforce: a list of errors
    if isinstance(body, dict) and isinstance(body.get("o:errorDetails"), list):
        details = body["o:errorDetails"]  # NetSuite: RFC 9457 problem with its details
        if details and isinstance(details[0], dict):
            body = details[0]
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value:
                return value[:500]
    return fallback


# Some systems answer a failed call with HTTP 200 and the error in the body (JSON-RPC): a
# connector passes ``body_error`` to class it; it returns (outcome, error class, message).
BodyError = Callable[[Any], tuple[str, str, str] | None]


@dataclass(frozen=True)
class _Request:
    """One request as it goes out, and what of it the ``OutboundCall`` row keeps."""

    operation: str
    method: str
    path: str
    url: str
    headers: dict[str, str]
    json_body: Any
    form: Any
    params: Mapping[str, Any] | None
    request_body: Any  # what is stored, redacted
    idempotency_key: str
    correlation_id: str
    attempt: int


@dataclass(frozen=True)
class TransportResponse:
    status_code: int
    body: Any
    headers: Mapping[str, str]
    outbound_call_id: int


# A call's path: a literal the connector wrote (``"customers"``), or its segments, each
# percent-encoded by the transport (``("subscriptions", subscription_id, "cancel")``).
Path = str | tuple[str, ...]
LITERAL_PATH = re.compile(r"[A-Za-z0-9_.~%/-]*")


def _ambient_correlation_id() -> str:
    """The correlation id the surrounding work set, or "" when there is none."""
    ambient = current_correlation_id()
    return "" if ambient == "-" else ambient


_sessions = threading.local()


def _session(system: str) -> requests.Session:
    """One pooled session per system and thread (sessions are not shared across threads)."""
    pool: dict[str, requests.Session] | None = getattr(_sessions, "by_system", None)
    if pool is None:
        pool = _sessions.by_system = {}
    session = pool.get(system)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc credentials from the environment
        session.headers["User-Agent"] = USER_AGENT
        pool[system] = session
    return session


class Transport:
    """HTTP to one system: timeouts, classification, and an ``OutboundCall`` row per call."""

    def __init__(self, config: ConnectorConfig) -> None:
        base_url_check(config.base_url, allowed_hosts=list(settings.CONNECTOR_ALLOWED_HOSTS))
        self.config = config
        self._host = urlsplit(config.base_url).netloc

    @classmethod
    def for_system(cls, system: str) -> Transport:
        """The transport of ``system`` as configured (else ``ConnectorConfigurationError``)."""
        return cls(connector_config(system))

    def path_encode(self, path: Path) -> str:
        """The request path: each segment of a tuple percent-encoded here (``/``, ``?``, ``#``
        and ``%`` included), so an id a system or a person supplied can never steer the call
        to another path of the host. A plain string is a
        literal path a connector wrote (or a client library encoded): refused when it has a dot
        segment or a character outside unreserved ones, ``/`` and ``%`` (before any query
        string). A segment that is empty (it would address the collection instead of the
        record), ``.`` or ``..`` is refused."""
        if isinstance(path, str):
            literal = path.partition("?")[0]  # a client library may put its query string here
            if not LITERAL_PATH.fullmatch(literal) or {".", ".."} & set(literal.split("/")):
                raise PermanentError(
                    f"refused path {path[:100]!r}", system=self.config.system, kind="invalid_path"
                )
            return path
        if any(segment in {"", ".", ".."} for segment in path):
            # requests sends %2E as "." again; a server would resolve ".." to the parent path
            raise PermanentError(
                "refused path with an empty, '.' or '..' segment", system=self.config.system,
                kind="invalid_path",
            )  # fmt: skip
        return "/".join(quote(str(segment), safe="") for segment in path)

    def url_for(self, path: str) -> str:
        """The URL of ``path`` under the base URL; a path that would leave the system's host
        raises ``ConnectorConfigurationError``.
        """
        url = self.config.base_url.rstrip("/") + "/" + path.lstrip("/")
        if urlsplit(url).netloc != self._host:
            raise ConnectorConfigurationError(f"path {path!r} leaves {self.config.system}'s host")
        return url

    def call(
        self,
        *,
        operation: str,
        method: str,
        path: Path,
        json: Any = None,
        form: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str = "",
        correlation_id: str = "",
        attempt: int = 1,
        encoded: tuple[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        raise_for_status: bool = True,
        body_error: BodyError | None = None,
        response_secret: bool = False,
    ) -> TransportResponse:
        """Make one request. Returns on 2xx, raises ``RetryableError``/``PermanentError``.

        ``correlation_id`` defaults to the one the surrounding work set with
        ``core.logging.correlation``. Raises ``CallInsideTransaction`` before any I/O when
        called inside ``transaction.atomic``. ``headers`` are added to (and override) the
        configured ones; ``body_error`` classes a 2xx whose body reports a failure;
        ``response_secret`` stores no response body at all (it carries a session token).

        For a client library that encodes its own requests (the Stripe SDK): ``encoded`` is
        (the body exactly as it goes on the wire, what to store of it once redacted), and with
        ``raise_for_status=False`` an HTTP error answer is returned (still classed and
        recorded) for the library to interpret; a call that got no answer still raises.
        """
        self._refuse_inside_transaction(operation)
        path = self.path_encode(path)
        correlation_id = correlation_id or _ambient_correlation_id()
        wire_body, request_body = encoded or (form, json if json is not None else form)
        request = _Request(
            operation=operation,
            method=method.upper(),
            path=path,
            url=self.url_for(path),
            headers=self._request_headers(headers, correlation_id, idempotency_key),
            json_body=json,
            form=wire_body,
            params=params,
            request_body=request_body,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            attempt=attempt,
        )
        with correlation(correlation_id):
            # Shared by every worker calling this system (Redis in production); sleeps.
            rate_limit_acquire(self.config.system, self.config.rate_limit_per_second)
            return self._send(
                request,
                raise_for_status=raise_for_status,
                body_error=body_error,
                response_secret=response_secret,
            )

    def _refuse_inside_transaction(self, operation: str) -> None:
        if transaction.get_connection().in_atomic_block:
            raise CallInsideTransaction(
                f"{self.config.system}.{operation}: outbound calls must not run inside a "
                "database transaction"
            )

    def _request_headers(
        self, headers: Mapping[str, str] | None, correlation_id: str, idempotency_key: str
    ) -> dict[str, str]:
        """The configured auth headers, then the caller's, then correlation and idempotency."""
        request_headers = {**self.config.auth_headers(), **(headers or {})}
        if correlation_id:
            request_headers["X-Correlation-Id"] = correlation_id
        if idempotency_key:
            request_headers["Idempotency-Key"] = idempotency_key
        return request_headers

    def _send(
        self,
        request: _Request,
        *,
        raise_for_status: bool = True,
        body_error: BodyError | None = None,
        response_secret: bool = False,
    ) -> TransportResponse:
        """Send ``request``, record it as one ``OutboundCall`` row, and return or raise."""
        system = self.config.system
        log_fields = {
            "system": system,
            "operation": request.operation,
            "method": request.method,
            "path": request.path,
            "attempt": request.attempt,
        }
        logger.info("outbound call %s.%s started", system, request.operation, extra=log_fields)
        started_at = timezone.now()
        started = time.perf_counter()
        response, failure = self._exchange(request)
        latency_ms = max(1, math.ceil((time.perf_counter() - started) * 1000))
        row = self._call_row(request, latency_ms=latency_ms, started_at=started_at)
        if response is None:
            assert failure is not None
            self._unanswered(row, failure, log_fields=log_fields)
        body = _parse_body(response)
        retry_after = self._answered(
            row, response, body, body_error=body_error, response_secret=response_secret
        )
        logger.log(
            logging.INFO if row.outcome == OutboundOutcome.OK else logging.WARNING,
            "outbound call %s.%s answered %s",
            system,
            request.operation,
            response.status_code,
            extra={
                **log_fields,
                "status": response.status_code,
                "latency_ms": latency_ms,
                "outcome": row.outcome,
            },
        )
        if row.outcome == OutboundOutcome.OK or not raise_for_status:
            return TransportResponse(
                status_code=response.status_code,
                body=body,
                headers=dict(response.headers),
                outbound_call_id=row.pk,
            )
        error_type = RetryableError if row.outcome == OutboundOutcome.RETRYABLE else PermanentError
        raise error_type(
            row.error_message,
            system=system,
            kind=row.error_class,
            status=response.status_code,
            outbound_call_id=row.pk,
            retry_after=retry_after,
        )

    def _exchange(
        self, request: _Request
    ) -> tuple[requests.Response | None, tuple[str, str] | None]:
        """The answer, or (error class, message) for a request that got none."""
        try:
            response = _session(self.config.system).request(
                request.method,
                request.url,
                json=request.json_body,
                data=request.form,
                params=request.params,
                headers=request.headers,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            return None, ("timeout", f"no answer within the timeout ({type(exc).__name__})")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            return None, ("connection_error", f"connection failed ({type(exc).__name__})")
        except requests.RequestException as exc:
            return None, (
                "request_error",
                f"the request could not be made ({type(exc).__name__})",
            )
        return response, None

    def _call_row(
        self, request: _Request, *, latency_ms: int, started_at: dt.datetime
    ) -> OutboundCall:
        """The ``OutboundCall`` row of ``request``, not saved yet, its request body redacted."""
        return OutboundCall(
            system=self.config.system,
            operation=request.operation,
            method=request.method,
            path=urlsplit(request.url).path[:500],
            idempotency_key=request.idempotency_key,
            latency_ms=latency_ms,
            attempt=request.attempt,
            correlation_id=request.correlation_id,
            request_body=body_for_storage(
                request.request_body, max_bytes=settings.OUTBOUND_BODY_MAX_BYTES
            ),
            created_at=started_at,
        )

    def _unanswered(
        self, row: OutboundCall, failure: tuple[str, str], *, log_fields: dict[str, Any]
    ) -> NoReturn:
        """Record a request that got no answer and raise: retryable, unless it was never sent."""
        row.error_class, row.error_message = failure
        row.outcome = (
            OutboundOutcome.PERMANENT
            if row.error_class == "request_error"
            else OutboundOutcome.RETRYABLE
        )
        row.save()
        logger.warning(
            "outbound call %s.%s failed: %s",
            row.system,
            row.operation,
            row.error_class,
            extra={**log_fields, "latency_ms": row.latency_ms, "outcome": row.outcome},
        )
        error_type = PermanentError if row.outcome == OutboundOutcome.PERMANENT else RetryableError
        raise error_type(
            row.error_message, system=row.system, kind=row.error_class, outbound_call_id=row.pk
        )

    def _answered(
        self,
        row: OutboundCall,
        response: requests.Response,
        body: Any,
        *,
        body_error: BodyError | None,
        response_secret: bool,
    ) -> int | None:
        """Class the answer onto ``row`` and save it; the seconds ``Retry-After`` asks for.

        The status decides, unless a 2xx body reports a failure (``body_error``); an error's
        message is the system's own explanation when its body has one.
        """
        outcome, error_class = status_class(response.status_code)
        retry_after = (
            retry_after_parse(response.headers.get("Retry-After"))
            if outcome == OutboundOutcome.RETRYABLE
            else None
        )
        row.status_code = response.status_code
        row.outcome = outcome
        row.error_class = error_class
        row.retry_after_seconds = retry_after
        row.response_body = (
            ""
            if response_secret
            else body_for_storage(response.content, max_bytes=settings.OUTBOUND_BODY_MAX_BYTES)
        )
        reported = body_error(body) if outcome == OutboundOutcome.OK and body_error else None
        if reported is not None:
            row.outcome, row.error_class, row.error_message = reported
        elif outcome != OutboundOutcome.OK:
            row.error_message = _error_message(body, response.reason or error_class)
        row.save()
        return retry_after


def _parse_body(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
