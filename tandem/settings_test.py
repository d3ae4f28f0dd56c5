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


_TEST_VAR = os.path.join(os.path.dirname(__file__), "..", "var", "test")
_require = os.environ.get("TANDEM_REQUIRE_BACKENDS", "") in {"1", "true", "yes"}
# TANDEM_TEST_BACKENDS=demo runs the tests on the demo's backends (SQLite and the filesystem
# broker, under var/test-demo/) even where PostgreSQL and Redis answer or are named; the
# workers a test starts are handed the SQLite URL and keep it.
_demo = os.environ.get("TANDEM_TEST_BACKENDS", "") == "demo"
if _demo:
    if not os.environ.get("DATABASE_URL", "").startswith("sqlite:"):
        os.environ.pop("DATABASE_URL", None)
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("filesystem:"):
        os.environ.pop("CELERY_BROKER_URL", None)
    _TEST_VAR = os.path.join(os.path.dirname(__file__), "..", "var", "test-demo")
    _require = False
if not _demo and "DATABASE_URL" not in os.environ and (_require or _answers("127.0.0.1", 5432)):
    os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/tandem"
if (
    not _demo
    and "CELERY_BROKER_URL" not in os.environ
    and (_require or _answers("127.0.0.1", 6379))
):
    os.environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/15"
if _require:
    for _name, _host, _port in (("PostgreSQL", "127.0.0.1", 5432), ("Redis", "127.0.0.1", 6379)):
        if not _answers(_host, _port):
            raise RuntimeError(f"TANDEM_REQUIRE_BACKENDS is set but {_name} is not answering")

# pytest-xdist runs the suite in several processes: each gets its own broker (a Redis database
# below the base one, or its own file-broker folder) and its own var/ folder (SQLite test
# database, broker folders). The worker subprocesses a test starts inherit the result, marked
# so that their own settings do not shift it a second time.
_xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist and not os.environ.get("TANDEM_TEST_ISOLATED"):
    _index = int(_xdist.removeprefix("gw") or 0)
    _broker = os.environ.get("CELERY_BROKER_URL", "")
    if _broker.startswith(("redis://", "rediss://")):
        _base, _, _db = _broker.rpartition("/")
        os.environ["CELERY_BROKER_URL"] = f"{_base}/{(int(_db or 0) - _index) % 16}"
    _var = os.environ.get("TANDEM_VAR_DIR", _TEST_VAR)
    os.environ["TANDEM_VAR_DIR"] = os.path.join(_var, _xdist)
    os.environ["TANDEM_TEST_ISOLATED"] = "1"
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "x" * 40)
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("TANDEM_VAR_DIR", _TEST_VAR)

from tandem.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 (whitenoise warns when it is missing)
