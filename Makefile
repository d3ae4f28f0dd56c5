# Tandem. `make demo` runs the console on SQLite + the filesystem broker; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock | cksum | cut -d' ' -f1)

.PHONY: help install browser demo test chaos-short screenshots lint format typecheck migrations-check deploy-check lock clean tryton-db


help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements-dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Tandem needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the locked dependencies

demo: install  ## migrate, seed demo users and data, serve on http://127.0.0.1:8000 with a worker
	DEBUG=1 TANDEM_DEMO_MODE=1 $(BIN)/python manage.py demo

browser:  ## Debian's chromium for the browser tests, installed when missing (needs root)
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null \
	  || (apt-get update -q && apt-get install -y -q chromium >/dev/null)

TEST_WORKERS ?= 2

test: install browser  ## run the whole suite in TEST_WORKERS processes (PostgreSQL/Redis when they answer, else SQLite/filesystem)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

chaos-short: install  ## the chaos soak's short form (by hand): 300 quotes under faults while workers are killed, Redis restarts, connections are cut
	$(BIN)/python bench/chaos.py --quotes $(or $(CHAOS_QUOTES),300)

screenshots: install browser  ## run the browser tests, saving their screenshots into docs/screenshots
	TANDEM_SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

lint: install  ## ruff lint and format check, and the package layering (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install  ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install  ## mypy with django-stubs
	$(BIN)/mypy core masterdata q2c orchestration exceptions console tandem demo sandbox

migrations-check: install  ## fail if a model change has no migration
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

deploy-check: install  ## Django's deployment checklist under production settings
	DEBUG=0 SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
	  ALLOWED_HOSTS=tandem.example.com $(BIN)/python manage.py check --deploy --fail-level WARNING

UV ?= uv

lock:  ## re-resolve the lock files from pyproject.toml, keeping existing pins (needs uv; UV=path/to/uv)
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements-dev.lock

TRYTON_VENV := var/tryton-venv
TRYTON_STAMP := $(TRYTON_VENV)/.installed-$(shell sha256sum requirements-tryton.txt | cut -c1-16)

$(TRYTON_STAMP): requirements-tryton.txt
	$(PYTHON) -m venv --clear $(TRYTON_VENV)
	$(TRYTON_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-tryton.txt
	touch $(TRYTON_STAMP)

tryton-db: $(TRYTON_STAMP)  ## rebuild the saved Tryton test database (after changing requirements-tryton.txt or scripts/tryton_setup.py)
	$(TRYTON_VENV)/bin/python scripts/tryton_setup.py

clean:  ## remove the virtualenv and local state (database, broker folders)
	rm -rf $(VENV) var
