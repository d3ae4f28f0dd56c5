"""API tokens, stored hashed: issued once in clear, kept as their SHA-256 digest, and
authenticated by the digest of what a client presents (``Authorization: Token <token>``).

A token is 160 random bits, so a plain SHA-256 is enough (no salt or slow hash: there is no
low-entropy secret to guess); the database and its backups never hold a usable token.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from core.errors import Refused
from core.models import ApiToken

PREFIX_SHOWN = 8


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_issue(*, user: User, rotate: bool = False) -> str:
    """Issue ``user``'s API token and return it: the only time it exists in clear.

    Refused when the user already has one (it cannot be shown again) unless ``rotate``, which
    revokes it first; refused for an inactive user.
    """
    if not user.is_active:
        raise Refused(
            f"{user.get_username()!r} is not active; an inactive user cannot use the API",
            kind=Refused.Kind.STATE,
        )
    key = secrets.token_hex(20)
    with transaction.atomic():
        current = ApiToken.objects.select_for_update().filter(user=user).first()
        if current is not None and not rotate:
            raise Refused(
                f"{user.get_username()!r} already has a token (starting {current.prefix}); "
                "it is shown only once: rotate it to issue a new one",
                kind=Refused.Kind.DUPLICATE,
            )
        if current is not None:
            current.delete()
        ApiToken.objects.create(user=user, digest=token_digest(key), prefix=key[:PREFIX_SHOWN])
    return key


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's ``Token`` scheme, looked up by the token's digest."""

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
