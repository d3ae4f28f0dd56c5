"""Errors a simulated system answers with, rendered in the shape of the product it imitates.

A handler raises ``ApiError`` before it changes anything: a raised error means nothing was
committed. Errors that follow a committed change (a declined card on a payment intent that now
exists) are returned as ordinary replies instead.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

SALESFORCE = "salesforce"
STRIPE = "stripe"
NETSUITE = "netsuite"
AVALARA = "avalara"


class ApiError(Exception):
    """A refusal: HTTP ``status`` with a product-specific ``code`` and a readable message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}


# Refusals raised by the server itself (not by a system's handler), per product:
# kind -> (code, message template).
_GENERIC: dict[str, dict[str, tuple[str, str]]] = {
    SALESFORCE: {
        "unauthorized": ("INVALID_SESSION_ID", "Session expired or invalid"),
        "no_route": ("NOT_FOUND", "The requested resource does not exist"),
        "method": ("METHOD_NOT_ALLOWED", "HTTP Method '{detail}' not allowed."),
        "bad_json": ("JSON_PARSER_ERROR", "{detail}"),
        "too_large": ("REQUEST_ENTITY_TOO_LARGE", "The request body is too large."),
        "throttled": ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        "server_error": (
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact "
            "support: {detail}",
        ),
        "unavailable": ("SERVER_UNAVAILABLE", "The server is temporarily unavailable."),
        "idempotency_mismatch": (
            "IDEMPOTENCY_KEY_REUSED",
            "Idempotency-Key '{detail}' was already used with a different request body.",
        ),
        "idempotency_key": ("INVALID_HEADER_TYPE", "{detail}"),
    },
    STRIPE: {
        "unauthorized": ("api_key_invalid", "Invalid API Key provided: {detail}"),
        "no_route": ("resource_missing", "Unrecognized request URL ({detail})."),
        "method": ("resource_missing", "Unrecognized request URL ({detail})."),
        "bad_json": ("parameter_invalid_json", "Invalid JSON request body: {detail}"),
        "too_large": ("request_too_large", "The request body is too large."),
        "throttled": (
            "rate_limit",
            "Too many requests hit the API too quickly. We recommend an exponential backoff "
            "of your requests.",
        ),
        "server_error": ("api_error", "Something went wrong on our end. Request {detail}."),
        "unavailable": ("api_error", "The service is temporarily unavailable."),
        "idempotency_mismatch": (
            "idempotency_key_in_use",
            "Keys for idempotent requests can only be used with the same parameters they "
            "were first used with. Try using a key other than '{detail}' if you meant to "
            "execute a different request.",
        ),
        "idempotency_key": ("idempotency_key_invalid", "{detail}"),
    },
    NETSUITE: {
        "unauthorized": ("INVALID_LOGIN", "Invalid login attempt. {detail}"),
        "no_route": ("NONEXISTENT_ID", "The record type or path does not exist: {detail}"),
        "method": ("METHOD_NOT_ALLOWED", "HTTP method {detail} is not allowed here."),
        "bad_json": ("INVALID_CONTENT", "Invalid JSON: {detail}"),
        "too_large": ("INVALID_CONTENT", "The request body is too large."),
        "throttled": (
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Request blocked by the request limit of the account. Try again later.",
        ),
        "server_error": ("UNEXPECTED_ERROR", "An unexpected error occurred. Error ID: {detail}"),
        "unavailable": ("SSS_REQUEST_LIMIT_EXCEEDED", "The service is temporarily unavailable."),
        "idempotency_mismatch": (
            "INVALID_IDEMPOTENCY_KEY",
            "Idempotency key '{detail}' was already used with a different request.",
        ),
        "idempotency_key": ("INVALID_IDEMPOTENCY_KEY", "{detail}"),
    },
    AVALARA: {
        "unauthorized": ("AuthenticationException", "Authentication failed. {detail}"),
        "no_route": ("EntityNotFoundError", "The requested resource was not found: {detail}"),
        "method": ("MethodNotAllowed", "The method {detail} is not allowed."),
        "bad_json": ("JsonFormatError", "The request body is not valid JSON: {detail}"),
        "too_large": ("RequestTooLarge", "The request body is too large."),
        "throttled": ("TooManyRequests", "Too many requests. Retry later."),
        "server_error": ("ServerConfiguration", "An unexpected error occurred: {detail}"),
        "unavailable": ("ServiceUnavailable", "The service is temporarily unavailable."),
        "idempotency_mismatch": (
            "IdempotencyKeyMismatch",
            "Idempotency key '{detail}' was already used with a different request.",
        ),
        "idempotency_key": ("InvalidIdempotencyKey", "{detail}"),
    },
}


def generic_error(
    style: str, kind: str, status: int, detail: str = "", *, headers: dict[str, str] | None = None
) -> ApiError:
    code, template = _GENERIC[style][kind]
    return ApiError(status, code, template.format(detail=detail), headers=headers)


def _stripe_type(error: ApiError) -> str:
    if error.status == 402:
        return "card_error"
    if error.status >= 500:
        return "api_error"
    if error.code.startswith("idempotency_key"):
        return "idempotency_error"
    return "invalid_request_error"


def render(style: str, error: ApiError) -> Any:
    """The JSON body the imitated product would send for ``error``."""
    if style == SALESFORCE:
        return [
            {"message": error.message, "errorCode": error.code, "fields": [error.field]}
            if error.field
            else {"message": error.message, "errorCode": error.code, "fields": []}
        ]
    if style == STRIPE:
        body: dict[str, Any] = {"type": _stripe_type(error), "code": error.code}
        body["message"] = error.message
        if error.field:
            body["param"] = error.field
        body.update(error.extra)
        return {"error": body}
    if style == NETSUITE:
        detail: dict[str, Any] = {"detail": error.message, "o:errorCode": error.code}
        if error.field:
            detail["o:errorPath"] = error.field
        return {
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15."
            + ("5." if error.status < 500 else "6.")
            + str(error.status % 100 + 1),
            "title": HTTPStatus(error.status).phrase,
            "status": error.status,
            "o:errorDetails": [detail],
        }
    if style == AVALARA:
        item: dict[str, Any] = {
            "code": error.code,
            "message": error.message,
            "faultCode": "Server" if error.status >= 500 else "Client",
            "severity": "Error",
        }
        item.update(error.extra)
        if error.field:
            item["refersTo"] = error.field
        return {
            "error": {
                "code": error.code,
                "message": error.message,
                "target": "Unknown" if error.status >= 500 else "IncorrectData",
                "details": [item],
            }
        }
    raise ValueError(f"unknown error style {style!r}")
