"""Webhook signatures: ``X-Tandem-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``f"{t}.{raw body}"``, so a captured delivery cannot be replayed outside the
tolerance window. Two secrets are valid at once during a rotation:
``WEBHOOK_SECRET_<SYSTEM>`` and ``WEBHOOK_SECRET_<SYSTEM>_PREVIOUS`` (or their ``*_FILE``).
A header may carry several ``v1=`` values (a sender signing with both secrets).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import stripe
from django.conf import settings

from core.env import envstr
from orchestration.events.errors import SignatureRejected

SIGNATURE_HEADER = "X-Tandem-Signature"
STRIPE_SIGNATURE_HEADER = "Stripe-Signature"
SCHEMES = ("tandem", "stripe")


def signature_scheme(system: str) -> str:
    """``stripe`` when ``system`` is served by Stripe (``WEBHOOK_SIGNATURE_<SYSTEM>``)."""
    scheme = str(getattr(settings, f"WEBHOOK_SIGNATURE_{system.upper()}", "tandem"))
    return scheme if scheme in SCHEMES else "tandem"


def webhook_secrets(system: str) -> list[str]:
    """The secrets valid now for ``system``: current first, then the previous one."""
    name = f"WEBHOOK_SECRET_{system.upper()}"
    return [secret for secret in (envstr(name, ""), envstr(f"{name}_PREVIOUS", "")) if secret]


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value a sender puts on ``body`` (used by the sandbox and the tests)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature_compute(secret=secret, timestamp=t, body=body)}"


TIMESTAMP = re.compile(r"[0-9]{1,12}")


def _parse(header: str, header_name: str = SIGNATURE_HEADER) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        # ASCII digits only (str.isdigit takes '²'), and no more than a timestamp needs.
        if key == "t" and TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureRejected(f"malformed {header_name} header (expected t=…,v1=…)")
    return timestamp, candidates


def signature_verify(
    *,
    header: str | None,
    body: bytes,
    secrets: list[str],
    tolerance_seconds: int,
    now: float | None = None,
) -> int:
    """Return the signed timestamp if ``header`` authenticates ``body``, else raise."""
    if not header:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header")
    timestamp, candidates = _parse(header)
    current = int(time.time() if now is None else now)
    if timestamp < current - tolerance_seconds:
        raise SignatureRejected(
            f"signature timestamp is older than the {tolerance_seconds} s tolerance"
        )
    if timestamp > current + tolerance_seconds:
        raise SignatureRejected(
            f"signature timestamp is further in the future than the {tolerance_seconds} s tolerance"
        )
    if not secrets:
        raise SignatureRejected("no webhook secret is configured for this system", status=503)
    matched = False
    for secret in secrets:
        expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
        for candidate in candidates:
            # Every comparison runs, so timing says nothing about which secret matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRejected("signature does not match")
    return timestamp


def stripe_signature_verify(
    *,
    header: str | None,
    body: bytes,
    secrets: list[str],
    tolerance_seconds: int,
    now: float | None = None,
) -> int:
    """Return the signed timestamp if a ``Stripe-Signature`` header authenticates ``body``.

    Stripe signs ``f"{t}.{raw body}"`` with HMAC-SHA256 under the endpoint's ``whsec_…``
    secret. The timestamp is checked here (so ``now`` can be given, and the reason is
    precise); the MAC by the SDK's own ``WebhookSignature.verify_header``, once per valid
    secret (two during a rotation).
    """
    if not header:
        raise SignatureRejected(f"missing {STRIPE_SIGNATURE_HEADER} header")
    timestamp, _ = _parse(header, STRIPE_SIGNATURE_HEADER)
    current = int(time.time() if now is None else now)
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureRejected(
            f"signature timestamp is outside the {tolerance_seconds} s tolerance"
        )
    if not secrets:
        raise SignatureRejected("no webhook secret is configured for this system", status=503)
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("body is not valid UTF-8", status=400) from None
    matched = False
    for secret in secrets:
        try:
            # tolerance=None: the SDK checks the MAC only (constant-time compare).
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
            matched = True
        except stripe.SignatureVerificationError:
            pass
    if not matched:
        raise SignatureRejected("signature does not match")
    return timestamp
