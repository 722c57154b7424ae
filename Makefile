# The two commands: `make run` (set up and run the platform on the embedded default) and `make test`.
PY := .venv/bin/python

.PHONY: run test test-fast test-faults setup setup-test lint check worker platform-worker web

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py build_tiny_model
	$(PY) manage.py t4dm_bootstrap
	$(PY) manage.py t4dm_up

test: setup-test
	scripts/ensure_chromium.sh
	$(PY) -m pytest

# The fast tier: no servers, worker processes, subprocesses or browser (the `slow` marker, set in
# tests/conftest.py). For the edit-test loop; `make test` still runs everything.
test-fast: setup-test
	$(PY) -m pytest -m "not slow and not faults" -q

# Real processes killed, frozen and restarted (tests/reliability; ~10 min on a lightly loaded 2-core box): CI's second stage.
test-faults: setup-test
	scripts/ensure_chromium.sh
	$(PY) -m pytest -m faults tests/reliability

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

lint: setup-test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# What CI checks besides the tests: lint, formatting, import contracts, migrations in step with models.
check: lint
	.venv/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

# Production pieces, started separately (see docs/configuration.md, "Production mode").
web: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py t4dm_up --no-worker --host 0.0.0.0 --server uvicorn

worker: setup
	$(PY) -m celery -A t4dm_site worker -Q $${T4DM_TRAINING_QUEUE:-training} -P solo --loglevel INFO

# Dataset work, evaluations, human-eval generation and provider follow-ups: needs the database.
platform-worker: setup
	$(PY) -m celery -A t4dm_site worker -Q $${T4DM_DATASET_QUEUE:-datasets},$${T4DM_EVAL_QUEUE:-eval} -P solo --loglevel INFO
