# The two commands: `make run` (set up and run the platform on the embedded default) and `make test`.
PY := .venv/bin/python

.PHONY: run test test-faults setup setup-test lint worker platform-worker web

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py build_tiny_model
	$(PY) manage.py t4dm_bootstrap
	$(PY) manage.py t4dm_up

test: setup-test
	scripts/ensure_chromium.sh
	$(PY) -m pytest

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

# Production pieces, started separately (see docs/configuration.md, "Production mode").
web: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py t4dm_up --no-worker --host 0.0.0.0

worker: setup
	$(PY) -m celery -A t4dm_site worker -Q $${T4DM_TRAINING_QUEUE:-training} -P solo --loglevel INFO

# Dataset work, evaluations, human-eval generation and provider follow-ups: needs the database.
platform-worker: setup
	$(PY) -m celery -A t4dm_site worker -Q $${T4DM_DATASET_QUEUE:-datasets},$${T4DM_EVAL_QUEUE:-eval} -P solo --loglevel INFO
