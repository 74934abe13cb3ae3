# `make run` and `make test` do all set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE ?= outreach.settings.dev

.PHONY: run test lint deps services db migrate seed bench chaos chaos-short clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

deps: $(VENV)/.installed

services:
	bin/ensure-services

db: deps services
	$(PY) bin/ensure-database

migrate: db
	$(PY) manage.py migrate --noinput
	$(PY) manage.py periodic_tasks_sync

seed: migrate
	$(PY) manage.py seed_demo

run: seed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start

test: db
	$(PY) -m pytest $(PYTEST_ARGS)

# The headline figures against the peer built the usual way (about 5 minutes; bench/README.md).
bench: deps services
	$(PY) bench/headline.py

# The fault suite (docs/reliability.md): its own PostgreSQL and Redis, the real processes,
# one table. About 8-9 minutes (bounded at 15); chaos-short is CI's version (under 3 minutes).
chaos: deps
	$(PY) -m chaos $(CHAOS_ARGS)

chaos-short: deps
	$(PY) -m chaos --short $(CHAOS_ARGS)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
