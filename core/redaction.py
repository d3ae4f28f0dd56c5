"""Redaction of secrets and personal data before a payload is stored or shown.

Keys are matched after normalising (lower case, separators dropped), so ``api_key``,
``apiKey`` and ``Api-Key`` are all caught; a matching key's whole value is replaced, even a
nested object. Free text (a non-JSON body) has e-mail addresses and long digit runs (card
and account numbers, phone numbers) masked. Stored text is capped with a visible marker.
"""

from __future__ import annotations

import json
import re
from typing import Any

REDACTED = "[redacted]"
SENSITIVE_KEY_PARTS = (
    "password", "passwd", "secret", "token", "apikey", "authorization", "card", "cvc", "cvv",
    "iban", "email", "phone", "taxid", "address",
)  # fmt: skip
_SEPARATORS = re.compile(r"[^a-z0-9]")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_DIGIT_RUN = re.compile(r"\+?\d[\d -]{7,}\d")


def key_is_sensitive(key: object) -> bool:
    """Whether a JSON key names a secret or personal value (a password, token, card
    number...), whatever its case and separators."""
    normalised = _SEPARATORS.sub("", str(key).lower())
    return any(part in normalised for part in SENSITIVE_KEY_PARTS)


def redact(value: Any) -> Any:
    """A copy of ``value`` (parsed JSON) with every sensitive key's value replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if key_is_sensitive(key) else redact(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def redact_text(text: str) -> str:
    """Mask what looks like personal data in free text."""
    return _DIGIT_RUN.sub(REDACTED, _EMAIL.sub(REDACTED, text))


def cap(text: str, *, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, ending in a truncation marker."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    marker = f"…[truncated, {len(encoded)} bytes]"
    keep = max(0, max_bytes - len(marker.encode("utf-8")))
    return encoded[:keep].decode("utf-8", errors="ignore") + marker


def body_for_storage(body: Any, *, max_bytes: int) -> str:
    """Redact and cap a request or response body: parsed JSON, a form dict, text or bytes."""
    if body is None or body == b"" or body == "":
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return cap(redact_text(body), max_bytes=max_bytes)
    text = json.dumps(redact(body), ensure_ascii=False, sort_keys=True, default=str)
    return cap(text, max_bytes=max_bytes)
