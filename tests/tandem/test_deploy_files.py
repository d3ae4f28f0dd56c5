"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Every service must be able to start healthy, every command must name something that exists
in this code base, and every variable the deployment sets must be one the settings read.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from celery import Celery
from django.conf import settings
from django.core.management import get_commands
from django.urls import resolve
from gunicorn.config import Config

ROOT = Path(settings.BASE_DIR)
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SETTINGS_SOURCE = (ROOT / "tandem" / "settings.py").read_text(encoding="utf-8")
SETTINGS_VARS = set(
    re.findall(r"env(?:str|bool|int|float|list)\(\s*\"([A-Z][A-Z0-9_]*)\"", SETTINGS_SOURCE)
)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _check_entry_point(argv: list[str]) -> None:
    """Fail unless ``argv`` runs something that exists here, with arguments it accepts."""
    program = argv[0]
    if program == "gunicorn":
        parsed = Config().parser().parse_args(argv[1:])
        assert len(parsed.args) == 1, argv
        module_name, _, attribute = parsed.args[0].partition(":")
        application = getattr(importlib.import_module(module_name), attribute)
        assert callable(application)
        assert parsed.bind == ["0.0.0.0:8000"]
    elif program == "celery":
        assert argv[1:3] == ["-A", "tandem"], argv
        assert isinstance(importlib.import_module("tandem.celery").app, Celery)
        assert argv[3] in {"worker", "beat"}, argv
        if argv[3] == "worker" and "-Q" in argv:
            queues = argv[argv.index("-Q") + 1].split(",")
            assert sorted(queues) == sorted(settings.TANDEM_QUEUES)
    elif program == "python":
        assert argv[1] == "manage.py" and (ROOT / "manage.py").is_file(), argv
        assert argv[2] in get_commands(), argv
    else:
        pytest.fail(f"unknown entry point {argv}")


def test_every_service_is_healthchecked_or_waits_for_healthy_dependencies():
    # given
    unchecked = []
    # when
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        for dependency, rule in depends.items():
            condition = rule["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}, name
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], (name, dependency)
        if "healthcheck" not in service and not depends:
            unchecked.append(name)
    # then
    assert unchecked == []
    assert sorted(SERVICES) == ["beat", "migrate", "postgres", "redis", "web", "worker"]
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["image"] == "redis:7"
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_app_services_migrate_before_they_start():
    # when
    waits = {
        name: service["depends_on"].get("migrate", {}).get("condition")
        for name, service in APP_SERVICES.items()
        if name != "migrate"
    }
    # then
    assert waits == {
        "web": "service_completed_successfully",
        "worker": "service_completed_successfully",
        "beat": "service_completed_successfully",
    }
    assert _argv(APP_SERVICES["migrate"]["command"]) == [
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]


# Importing tandem.wsgi builds the app; WhiteNoise warns that the test STATIC_ROOT is empty.
@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")
def test_every_command_names_an_entry_point_that_exists():
    # given
    commands = {name: _argv(service["command"]) for name, service in APP_SERVICES.items()}
    cmd = next(rest for keyword, rest in _dockerfile_instructions() if keyword == "CMD")
    # when
    for argv in [*commands.values(), json.loads(cmd)]:
        _check_entry_point(argv)
    # then
    assert [argv[0] for argv in commands.values()] == ["python", "gunicorn", "celery", "celery"]
    assert commands["worker"][3] == "worker"
    assert commands["beat"][3] == "beat"


def test_every_variable_the_deployment_sets_is_read_by_the_settings():
    # given
    compose_vars = {
        var for service in APP_SERVICES.values() for var in service.get("environment", {})
    }
    env_lines = [rest for keyword, rest in _dockerfile_instructions() if keyword == "ENV"]
    docker_vars = {
        pair.split("=", 1)[0]
        for rest in env_lines
        for pair in shlex.split(rest)
        if not pair.startswith(("PYTHON", "PIP_"))
    }
    # when
    unknown = sorted((compose_vars | docker_vars) - SETTINGS_VARS)
    # then
    assert unknown == []
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"} <= compose_vars
    assert docker_vars == {"TANDEM_VAR_DIR", "STATIC_ROOT"}


def test_secret_key_is_required_and_never_defaulted():
    # when
    values = {service["environment"]["SECRET_KEY"] for service in APP_SERVICES.values()}
    # then
    assert len(values) == 1
    assert values.pop().startswith("${SECRET_KEY:?")


def test_web_healthcheck_reaches_the_login_page_as_https_behind_the_proxy():
    # given
    web = SERVICES["web"]
    source = web["healthcheck"]["test"][-1]
    # when
    url = re.search(r"'(http://[^']+)'", source).group(1)  # type: ignore[union-attr]
    # then
    assert urlsplit(url).hostname in web["environment"]["ALLOWED_HOSTS"].split(",")
    assert resolve(urlsplit(url).path).url_name == "login"
    assert "'X-Forwarded-Proto': 'https'" in source
    assert web["environment"]["SECURE_PROXY_SSL_HEADER"] == "1"
    assert web["ports"] == ["8000:8000"]


def test_dockerfile_installs_the_lock_file_and_runs_as_a_non_root_user():
    # when
    steps = _dockerfile_instructions()
    # then
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("COPY", "requirements.lock ./") in steps
    runs = [rest for keyword, rest in steps if keyword == "RUN"]
    assert "pip install --require-hashes --no-deps -r requirements.lock" in runs
    assert any("manage.py collectstatic --noinput" in run for run in runs)
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users == ["tandem"]
    assert [keyword for keyword, _ in steps].index("USER") > max(
        i for i, (keyword, _) in enumerate(steps) if keyword == "RUN"
    )


def test_the_lock_file_pins_every_program_the_deployment_runs():
    # given
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    # when
    pinned = set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", lock, flags=re.MULTILINE))
    # then
    assert {"gunicorn", "celery", "whitenoise", "psycopg", "psycopg-binary", "redis"} <= pinned


def test_docker_build_context_leaves_out_local_state():
    # when
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    # then
    assert {".git", ".venv", "var", ".env"} <= set(ignored)
