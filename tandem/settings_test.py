"""Settings for the test suite: production settings with test-only secrets and backends.

PostgreSQL and Redis are used when DATABASE_URL / CELERY_BROKER_URL say so, or when they
answer on their default local ports; otherwise the suite runs on SQLite and the filesystem
broker. ``TANDEM_REQUIRE_BACKENDS=1`` (CI) turns a missing server into an error, never a
fallback. The chosen backends are printed in pytest's header.
"""

from __future__ import annotations

import os
import socket


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_require = os.environ.get("TANDEM_REQUIRE_BACKENDS", "") in {"1", "true", "yes"}
if "DATABASE_URL" not in os.environ and (_require or _answers("127.0.0.1", 5432)):
    os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/tandem"
if "CELERY_BROKER_URL" not in os.environ and (_require or _answers("127.0.0.1", 6379)):
    os.environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/15"
if _require:
    for _name, _host, _port in (("PostgreSQL", "127.0.0.1", 5432), ("Redis", "127.0.0.1", 6379)):
        if not _answers(_host, _port):
            raise RuntimeError(f"TANDEM_REQUIRE_BACKENDS is set but {_name} is not answering")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "x" * 40)
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault(
    "TANDEM_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test")
)

from tandem.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 (whitenoise warns when it is missing)
