"""Property-based requests from each API's own OpenAPI schema (schemathesis), in-process through
Django's WSGI handler, for all three APIs: /api/v1 (native), /v1 (OpenAI-compatible) and
/api/2.0/mlflow (MLflow-compatible). Each runs in schemathesis' positive mode (data that fits the
schema) and its negative mode (data that violates it: wrong types, missing fields, malformed bodies).
Whatever the input, no operation answers 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample, Unsatisfiable
from schemathesis import GenerationMode

SCHEMAS = {
    "api-v1": "/api/v1/openapi.json",
    "openai": "/v1/openapi.json",
    "mlflow": "/api/2.0/mlflow/openapi.json",
}
EXAMPLES = 6  # per operation and run (seeded: hypothesis' derandomize), ~130 operations


@pytest.fixture
def wsgi_app(db, artifact_root, settings, tmp_path):
    """The real WSGI app on the test database (the test transaction stays open, as Django's test Client
    keeps it: no connection closing between requests)."""
    settings.IMPORT_ROOT = tmp_path / "imports"
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    settings.TOKEN_RATE_LIMIT = 10**6  # generated requests send the admin's token to worker endpoints (401)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _real_ids(world: dict) -> dict:
    """Path parameters → the fixture's records, so that generated bodies and queries reach the code
    behind the lookups instead of stopping at 404."""
    return {
        "dataset_id": world["dataset_id"], "number": 1, "experiment_id": world["experiment_id"],
        "config_id": world["config_id"], "job_id": world["done_job_id"], "evaluation_id": world["evaluation_id"],
        "model_id": world["model_id"], "version": world["version"], "export_id": 1,
        "assignment_id": world["assignment"].pk, "file_id": world["file_id"],
        "fine_tuning_job_id": world["fine_tuning_job_id"],
    }  # fmt: skip


def _server_errors(
    schema, headers: dict, ids: dict | None = None, examples: int = EXAMPLES, mode: str = "positive"
) -> list[str]:
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy(generation_mode=GenerationMode(mode), headers=dict(headers))
        if ids is not None:
            names = {p.name for p in operation.path_parameters}
            if not names or not names <= set(ids) | {"task_id"}:
                continue

            def fill(case, operation=operation):
                values = dict(
                    ids,
                    task_id=ids["human_eval_task_id"]
                    if "/human-eval/" in operation.path
                    else ids["dataset_task_id"],
                )
                case.path_parameters = {name: values[name] for name in case.path_parameters or {}}
                return case

            strategy = strategy.map(fill)

        def fails(case, operation=operation) -> bool:
            response = case.call()
            if response.status_code >= 500:
                found.append(
                    f"{mode}: {operation.method.upper()} {operation.path}: {response.status_code} for "
                    f"path={case.path_parameters} query={case.query} body={str(case.body)[:300]}"
                )
                return True
            return False

        try:
            find(
                strategy,
                fails,
                settings=settings(
                    max_examples=examples,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                ),
            )
        except (NoSuchExample, Unsatisfiable):  # no failing case; or no negative case for this operation
            pass
    return found


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("name", SCHEMAS)
@pytest.mark.parametrize("identity", ["admin", "anonymous"])
def test_no_operation_answers_5xx(wsgi_app, people, name, identity, mode):
    schema = schemathesis.openapi.from_wsgi(SCHEMAS[name], wsgi_app)
    headers = {"Authorization": f"Bearer {people['admin'].raw_token}"} if identity == "admin" else {}
    errors = _server_errors(schema, headers, examples=EXAMPLES if identity == "admin" else 2, mode=mode)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("name", SCHEMAS)
def test_no_operation_on_real_records_answers_5xx(wsgi_app, people, world, name, mode):
    """The same, with the path naming the owner's real records (as the owner)."""
    schema = schemathesis.openapi.from_wsgi(SCHEMAS[name], wsgi_app)
    ids = {
        **_real_ids(world),
        "human_eval_task_id": world["human_eval_task_id"],
        "dataset_task_id": world["dataset_task_id"],
    }
    errors = _server_errors(
        schema, {"Authorization": f"Bearer {people['owner'].raw_token}"}, ids, examples=4, mode=mode
    )
    assert not errors, "\n".join(errors)
