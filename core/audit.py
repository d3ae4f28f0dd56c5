"""Who did it and why: the actor and reason behind every history row.

Services run inside ``audit_context(actor=..., reason=...)``; every audited save in that block
writes its history row with the actor's user and the reason. People act through their own
user; background work acts through a named system actor (``worker``, ``connector:erp``,
``sandbox:cpq``) backed by an inactive user row, so auditors can filter history by either
in one place.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, connection, models, transaction
from django.http import HttpRequest, HttpResponse
from simple_history.models import HistoricalRecords

SYSTEM_ACTOR_PATTERN = re.compile(r"^(worker|scheduler|system|(connector|sandbox):[a-z_]+)$")


@dataclass(frozen=True)
class Actor:
    """A person (their user) or a named system actor (an inactive service user)."""

    user: Any

    @property
    def name(self) -> str:
        return str(self.user.get_username())

    @property
    def is_system(self) -> bool:
        return bool(SYSTEM_ACTOR_PATTERN.match(self.name)) and not self.user.is_active

    @classmethod
    def person(cls, user: AbstractBaseUser | AnonymousUser) -> Actor:
        if not getattr(user, "is_authenticated", False):
            raise ValueError("an anonymous user cannot act on records")
        return cls(user=user)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(user=system_user(name))

    def has_perm(self, perm: str) -> bool:
        """System actors act for the platform itself; people need the permission."""
        return self.is_system or bool(self.user.has_perm(perm))


# name -> the system actor's user, read outside a transaction (so its row is committed).
# A system user is never deleted; only a test database flush removes them all
# (``post_migrate`` follows it).
_system_users: dict[str, Any] = {}
_system_users_lock = threading.Lock()


def system_users_forget(**_: Any) -> None:
    """Forget the cached system users (connected to ``post_migrate``, which a flush sends)."""
    with _system_users_lock:
        _system_users.clear()


def system_user(name: str) -> Any:
    """Return (creating once) the inactive user that stands for a system actor.

    Cached per process when read outside any transaction (its row is then committed: one
    created or found inside a transaction may yet roll back), so building a system actor
    costs no query after that."""
    if not SYSTEM_ACTOR_PATTERN.match(name):
        raise ValueError(f"{name!r} is not a system actor name")
    cached = _system_users.get(name)
    if cached is not None:
        return cached
    user_model = get_user_model()
    try:
        with transaction.atomic():
            user, _ = user_model.objects.get_or_create(
                username=name, defaults={"is_active": False, "first_name": "system"}
            )
    except IntegrityError:  # another process created it between our get and create
        user = user_model.objects.get(username=name)
    if user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if not connection.in_atomic_block:
        with _system_users_lock:
            _system_users[name] = user
    return user


@dataclass(frozen=True)
class _Context:
    actor: Actor | None
    reason: str | None


_NO_CONTEXT = _Context(actor=None, reason=None)
_current: contextvars.ContextVar[_Context] = contextvars.ContextVar(
    "tandem_audit",
    default=_NO_CONTEXT,  # frozen, so sharing one instance is safe
)


@contextlib.contextmanager
def audit_context(*, actor: Actor | None = None, reason: str | None = None) -> Iterator[None]:
    """Attribute every history row written in this block to ``actor`` with ``reason``.

    Nested blocks inherit what they do not override, so a worker-level actor set by the
    Celery task base class is kept while a service adds its own reason.
    """
    outer = _current.get()
    token = _current.set(
        _Context(
            actor=actor if actor is not None else outer.actor,
            reason=reason if reason is not None else outer.reason,
        )
    )
    try:
        yield
    finally:
        _current.reset(token)


def current_actor() -> Actor | None:
    """The actor of the ``audit_context`` being run (None outside any)."""
    return _current.get().actor


def current_reason() -> str | None:
    """The reason of the ``audit_context`` being run (None outside any)."""
    return _current.get().reason


def _history_user(request: HttpRequest | None = None, **_: Any) -> Any:
    ctx = _current.get()
    if ctx.actor is not None:
        return ctx.actor.user
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user
    return None


# simple-history's history_change_reason column is varchar(100); a reason quoting a long
# downstream error must not make the write it explains fail.
HISTORY_REASON_MAX = 100


def reason_fit(reason: str | None) -> str | None:
    """The reason as stored in a history row: cut to the column with an ellipsis."""
    if reason is None or len(reason) <= HISTORY_REASON_MAX:
        return reason
    return reason[: HISTORY_REASON_MAX - 1] + "…"


class AuditedHistory(HistoricalRecords):
    """HistoricalRecords that takes the actor and reason from the audit context."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("get_user", _history_user)
        kwargs.setdefault("cascade_delete_history", False)
        super().__init__(**kwargs)

    def get_meta_options(self, model: Any) -> dict[str, Any]:
        """Indexes for the audit browser's reads at millions of rows: newest first overall,
        one actor's changes newest first, one record's rows in order (and its previous row)."""
        options: dict[str, Any] = super().get_meta_options(model)
        options["indexes"] = (
            models.Index(fields=["history_date", "history_id"]),
            models.Index(fields=["history_user", "history_date"]),
            models.Index(fields=["id", "history_date"]),
        )
        return options

    def get_change_reason_for_object(self, instance: Any, history_type: str, using: Any) -> Any:
        explicit = super().get_change_reason_for_object(instance, history_type, using)
        return reason_fit(explicit or current_reason())


class AuditContextMiddleware:
    """Make the signed-in person the actor for anything their request writes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            with audit_context(actor=Actor.person(user)):
                return self.get_response(request)
        return self.get_response(request)
