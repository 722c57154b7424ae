"""Item 11: every API operation (enumerated from the three NinjaAPIs' OpenAPI schemas, so a new endpoint
is covered the moment it exists) × every identity gets what POLICY says. An operation without a POLICY
entry fails the test: a new endpoint must declare who may call it."""

from __future__ import annotations

import json

from experiments.mlflow_compat.api import mlflow_api
from experiments.openai_compat.api import openai_api
from t4dm_site.api import api as main_api

IDENTITIES = ("anonymous", "revoked", "worker_other", "evaluator", "other", "owner", "admin")

# What each kind of operation allows. "ok": not refused (no 401/403/404, no 5xx); a status number or a
# tuple: exactly that. Objects of another user are 404 (their existence is not revealed).
DENIED = (401, 403, 404)
TRAINER_OWNED = {
    "anonymous": 401, "revoked": 401, "worker_other": 401, "evaluator": 403,
    "other": 404, "owner": "ok", "admin": "ok",
}  # fmt: skip
TRAINER = {
    "anonymous": 401, "revoked": 401, "worker_other": 401, "evaluator": 403,
    "other": "ok", "owner": "ok", "admin": "ok",
}  # fmt: skip
ANY_USER = {
    "anonymous": 401, "revoked": 401, "worker_other": 401, "evaluator": "ok",
    "other": "ok", "owner": "ok", "admin": "ok",
}  # fmt: skip
ASSIGNEE = {  # a human-eval assignment: only the evaluator it is assigned to
    "anonymous": 401, "revoked": 401, "worker_other": 401, "evaluator": "ok",
    "other": 404, "owner": 404, "admin": 404,
}  # fmt: skip
JOB_WORKER = {  # the job's own worker token only ("worker_own" is checked separately)
    "anonymous": 401, "revoked": 401, "worker_other": (401, 403), "evaluator": 401,
    "other": 401, "owner": 401, "admin": 401,
}  # fmt: skip
INGEST = {  # the job's worker token, or its owner / an admin (SDK runs)
    "anonymous": 401, "revoked": 401, "worker_other": (401, 403), "evaluator": 403,
    "other": 404, "owner": "ok", "admin": "ok",
}  # fmt: skip
ADMIN_ONLY = {
    "anonymous": 401, "revoked": 401, "worker_other": 401, "evaluator": 403,
    "other": 403, "owner": 403, "admin": "ok",
}  # fmt: skip
# Operations on records this fixture does not create (a missing id): past the role gate is all we see.
ADMIN_ONLY_BY_ID = {**ADMIN_ONLY, "admin": "reached"}
# Done once: the owner's call deletes (restores, untags) the record, so the admin's same call after it only
# has to get past the role gate (a 404 then, as MLflow and OpenAI answer). DELETE operations run after every
# other operation (see the test); MLflow's delete/restore pairs follow each other in the schema's order.
TRAINER_OWNED_ONCE = {**TRAINER_OWNED, "admin": "reached"}
TRAINER_BY_ID = {**TRAINER, "other": "reached", "owner": "reached", "admin": "reached"}
WORKER_SECRET = {name: 401 for name in IDENTITIES}
PUBLIC = {name: "ok" for name in IDENTITIES}

POLICY: dict[str, dict] = {}


def _policy(policy: dict, *operations: str) -> None:
    for operation in operations:
        POLICY[operation] = policy


_policy(
    TRAINER,
    "POST /api/v1/datasets", "GET /api/v1/datasets", "POST /api/v1/datasets/validate",
    "POST /api/v1/datasets/knowledge", "POST /api/v1/experiments", "GET /api/v1/experiments",
    "POST /api/v1/configs", "GET /api/v1/configs", "GET /api/v1/templates", "POST /api/v1/estimate",
    "POST /api/v1/jobs", "GET /api/v1/jobs", "GET /api/v1/workers", "GET /api/v1/runs",
    "GET /api/v1/runs/compare", "POST /api/v1/evaluations", "GET /api/v1/evaluations",
    "GET /api/v1/evaluations/thresholds", "POST /api/v1/compare-models", "POST /api/v1/compare-versions",
    "GET /api/v1/models", "POST /api/v1/models/versions", "POST /api/v1/finetune/openai",
    "POST /api/v1/finetune/anthropic", "POST /api/v1/human-eval/tasks", "GET /api/v1/human-eval/tasks",
    "POST /api/v1/human-eval/tasks/upload",
    "POST /v1/files", "GET /v1/files", "POST /v1/fine_tuning/jobs", "GET /v1/fine_tuning/jobs",
    "POST /api/2.0/mlflow/experiments/create", "GET /api/2.0/mlflow/experiments/get-by-name",
    "POST /api/2.0/mlflow/experiments/search",
    "GET /api/2.0/mlflow/experiments/search", "POST /api/2.0/mlflow/runs/create",
    "POST /api/2.0/mlflow/runs/search",
            )  # fmt: skip
_policy(
    TRAINER_OWNED,
    "GET /api/v1/datasets/tasks/{task_id}", "GET /api/v1/datasets/{dataset_id}",
    "GET /api/v1/datasets/{dataset_id}/versions", "GET /api/v1/datasets/{dataset_id}/versions/{number}",
    "GET /api/v1/datasets/{dataset_id}/versions/{number}/rows",
    "GET /api/v1/datasets/{dataset_id}/versions/{number}/download",
    "POST /api/v1/datasets/{dataset_id}/validate", "POST /api/v1/datasets/{dataset_id}/clean",
    "POST /api/v1/datasets/{dataset_id}/augment", "GET /api/v1/experiments/{experiment_id}",
    "POST /api/v1/configs/{config_id}/early-stopping", "POST /api/v1/configs/{config_id}/checkpoints",
    "GET /api/v1/configs/{config_id}", "GET /api/v1/jobs/{job_id}", "POST /api/v1/jobs/{job_id}/cancel",
    "POST /api/v1/jobs/{job_id}/resume", "GET /api/v1/jobs/{job_id}/metrics",
    "GET /api/v1/evaluations/{evaluation_id}", "GET /api/v1/evaluations/{evaluation_id}/examples",
    "GET /api/v1/models/{model_id}/versions", "PATCH /api/v1/models/{model_id}",
    "GET /api/v1/models/{model_id}/versions/{version}", "GET /api/v1/models/{model_id}/versions/{version}/gate",
    "POST /api/v1/models/{model_id}/versions/{version}/stage",
    "POST /api/v1/models/{model_id}/versions/{version}/signoff",
    "PUT /api/v1/models/{model_id}/versions/{version}/model-card",
    "POST /api/v1/models/{model_id}/versions/{version}/exports",
    "GET /api/v1/models/{model_id}/versions/{version}/exports/{export_id}/archive",
    "GET /api/v1/finetune/openai/{job_id}", "POST /api/v1/finetune/openai/{job_id}/cancel",
    "GET /api/v1/human-eval/tasks/{task_id}", "GET /api/v1/human-eval/tasks/{task_id}/results",
    "GET /api/v1/human-eval/tasks/{task_id}/export", "POST /api/v1/human-eval/tasks/{task_id}/preference-dataset",
    "GET /v1/files/{file_id}", "GET /v1/files/{file_id}/content",
    "GET /v1/fine_tuning/jobs/{fine_tuning_job_id}", "POST /v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
    "GET /v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
    "GET /v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
)  # fmt: skip
_policy(
    TRAINER_OWNED,
    "GET /api/2.0/mlflow/experiments/get", "POST /api/2.0/mlflow/runs/update", "GET /api/2.0/mlflow/runs/get",
    "POST /api/2.0/mlflow/runs/log-metric", "POST /api/2.0/mlflow/runs/log-parameter",
    "POST /api/2.0/mlflow/runs/set-tag", "POST /api/2.0/mlflow/runs/log-batch",
    "GET /api/2.0/mlflow/metrics/get-history",
    "POST /api/2.0/mlflow/experiments/update", "POST /api/2.0/mlflow/experiments/set-experiment-tag",
    "POST /api/2.0/mlflow/runs/delete", "POST /api/2.0/mlflow/runs/restore",
    "POST /api/2.0/mlflow/runs/log-inputs",
)  # fmt: skip
_policy(  # MLflow's RESOURCE_DOES_NOT_EXIST: no active experiment to delete, no deleted one to restore, no tag
    TRAINER_OWNED_ONCE,
    "POST /api/2.0/mlflow/experiments/delete", "POST /api/2.0/mlflow/experiments/restore",
    "POST /api/2.0/mlflow/experiments/delete-experiment-tag", "POST /api/2.0/mlflow/runs/delete-tag",
)  # fmt: skip
_policy(ANY_USER, "GET /api/v1/human-eval/queue", "GET /api/v1/finetune-config")
_policy(TRAINER_OWNED, "GET /api/v1/jobs/{job_id}/events", "PATCH /api/v1/jobs/{job_id}")
_policy(TRAINER_OWNED_ONCE, "DELETE /v1/files/{file_id}")
# Serving: an empty body is a 4xx past the role gate; a model that is not the caller's is 404 (tests/serving).
_policy(TRAINER, "POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models")
_policy(TRAINER_BY_ID, "GET /v1/models/{model}")
_policy(TRAINER_OWNED, "GET /api/v1/models/{model_id}/versions/{version}/metadata")
_policy(ADMIN_ONLY, "GET /api/v1/webhooks", "POST /api/v1/webhooks")
_policy(
    ADMIN_ONLY_BY_ID,
    "GET /api/v1/webhooks/{subscription_id}", "PATCH /api/v1/webhooks/{subscription_id}",
    "DELETE /api/v1/webhooks/{subscription_id}", "GET /api/v1/webhooks/{subscription_id}/deliveries",
)  # fmt: skip
_policy(
    TRAINER, "POST /api/v1/workflows", "GET /api/v1/workflows", "POST /api/v1/workflows/upload",
    "POST /api/v1/workflows/demo",
)  # fmt: skip
_policy(TRAINER_BY_ID, "GET /api/v1/workflows/{workflow_id}", "POST /api/v1/workflows/{workflow_id}/retry")
_policy(
    ASSIGNEE,
    "GET /api/v1/human-eval/queue/{task_id}/next",
    "POST /api/v1/human-eval/assignments/{assignment_id}/rating",
    "POST /api/v1/human-eval/assignments/{assignment_id}/draft",
    "POST /api/v1/human-eval/assignments/{assignment_id}/skip",
    "GET /api/v1/human-eval/assignments/{assignment_id}",
    "PUT /api/v1/human-eval/assignments/{assignment_id}/rating",
)
_policy(
    JOB_WORKER,
    "GET /api/v1/worker/jobs/{job_id}/spec", "POST /api/v1/worker/jobs/{job_id}/status",
    "POST /api/v1/worker/jobs/{job_id}/progress", "POST /api/v1/worker/jobs/{job_id}/checkpoints",
    "POST /api/v1/worker/jobs/{job_id}/events", "POST /api/v1/worker/jobs/{job_id}/refuse",
    "POST /api/v1/worker/jobs/{job_id}/rendezvous",
)  # fmt: skip
_policy(INGEST, "POST /api/v1/ingest/jobs/{job_id}/metrics")
_policy(WORKER_SECRET, "POST /api/v1/worker/heartbeat")


def operations() -> list[tuple[str, str]]:
    found = []
    for ninja_api in (main_api, openai_api, mlflow_api):
        for path, methods in ninja_api.get_openapi_schema()["paths"].items():
            found += [(method.upper(), path) for method in methods]
    return found


OPERATIONS = operations()


def test_every_operation_has_a_policy():
    missing = [f"{m} {p}" for m, p in OPERATIONS if f"{m} {p}" not in POLICY]
    stale = sorted(set(POLICY) - {f"{m} {p}" for m, p in OPERATIONS})
    assert not missing, "operations without an access policy (add them to POLICY):\n" + "\n".join(missing)
    assert not stale, "POLICY names operations that no longer exist:\n" + "\n".join(stale)


def _path(path: str, world: dict) -> str:
    values = dict(world)
    if "/human-eval/" in path:
        values["task_id"] = world["human_eval_task_id"]
    elif "/datasets/tasks/" in path:
        values["task_id"] = world["dataset_task_id"]
    if path.startswith("/api/v1/finetune/openai/") or path.endswith("/resume"):
        values["job_id"] = world["done_job_id"]  # a finished job with a checkpoint and a provider record
    values["assignment_id"] = world["assignment"].pk
    values["number"] = 1
    values["subscription_id"] = values["workflow_id"] = "missing-1"
    values["export_id"] = 1
    values["model"] = "missing-model"
    return path.format(**values) + QUERIES.get(path, "").format(**world)


# Enough of a body or query for the request to reach the ownership check (not a 422 before it).
BODIES = {
    "POST /api/v1/ingest/jobs/{job_id}/metrics": {"points": [{"key": "loss", "step": 1, "value": 1.0}]},
    "POST /api/v1/worker/jobs/{job_id}/status": {"status": "running", "worker": "w"},
    "POST /api/v1/worker/jobs/{job_id}/progress": {"step": 1, "total_steps": 10, "epoch": 0.1},
    "POST /api/v1/worker/jobs/{job_id}/checkpoints": {"step": 1, "path": "checkpoint-1"},
    "POST /api/v1/worker/jobs/{job_id}/events": {"message": "hello"},
    # past the token check, a refusal without a reason is a 400: a real refusal would requeue the job
    # under a new token and void the one the other rows use
    "POST /api/v1/worker/jobs/{job_id}/refuse": {"worker": "w"},
    # past the token check, an endpoint without a port is a 400 (nothing recorded)
    "POST /api/v1/worker/jobs/{job_id}/rendezvous": {"endpoint": "no-port"},
    "POST /api/v1/models/{model_id}/versions/{version}/stage": {"stage": "staging"},
    "POST /api/v1/human-eval/assignments/{assignment_id}/rating": {"scores": {"overall": 4}},
    "POST /api/v1/human-eval/assignments/{assignment_id}/draft": {"scores": {"overall": 4}},
    "PUT /api/v1/human-eval/assignments/{assignment_id}/rating": {"scores": {"overall": 4}},
    "POST /api/2.0/mlflow/runs/update": {"run_id": "{run_id}", "status": "FINISHED"},
    "POST /api/2.0/mlflow/runs/log-metric": {"run_id": "{run_id}", "key": "m", "value": 1, "timestamp": 1, "step": 1},
    "POST /api/2.0/mlflow/runs/log-parameter": {"run_id": "{run_id}", "key": "p", "value": "1"},
    "POST /api/2.0/mlflow/runs/set-tag": {"run_id": "{run_id}", "key": "t", "value": "1"},
    "POST /api/2.0/mlflow/runs/log-batch": {"run_id": "{run_id}", "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 2}]},
    # deleted, then restored by the next operation in the schema's order (the rows after see it active)
    "POST /api/2.0/mlflow/experiments/delete": {"experiment_id": "{mlflow_experiment_id}"},
    "POST /api/2.0/mlflow/experiments/restore": {"experiment_id": "{mlflow_experiment_id}"},
    "POST /api/2.0/mlflow/experiments/update": {"experiment_id": "{mlflow_experiment_id}", "new_name": "renamed"},
    "POST /api/2.0/mlflow/experiments/set-experiment-tag": {"experiment_id": "{mlflow_experiment_id}", "key": "t", "value": "1"},
    "POST /api/2.0/mlflow/experiments/delete-experiment-tag": {"experiment_id": "{mlflow_experiment_id}", "key": "t"},
    "POST /api/2.0/mlflow/runs/delete": {"run_id": "{run_id}"},
    "POST /api/2.0/mlflow/runs/restore": {"run_id": "{run_id}"},
    "POST /api/2.0/mlflow/runs/delete-tag": {"run_id": "{run_id}", "key": "t"},
    "POST /api/2.0/mlflow/runs/log-inputs": {"run_id": "{run_id}", "datasets": []},
}  # fmt: skip
QUERIES = {
    "/api/2.0/mlflow/experiments/get": "?experiment_id={mlflow_experiment_id}",
    "/api/2.0/mlflow/runs/get": "?run_id={run_id}",
    "/api/2.0/mlflow/metrics/get-history": "?run_id={run_id}&metric_key=m",
}


def _headers(identity: str, people: dict, world: dict, revoked: str) -> dict:
    if identity == "anonymous":
        return {}
    token = {
        "revoked": revoked,
        "worker_other": world["other_job_token"],
        "worker_own": world["job_token"],
    }.get(identity) or people[identity].raw_token
    return {"Authorization": f"Bearer {token}"}


def _call(client, method: str, path: str, url: str, headers: dict, world: dict):
    if method in ("GET", "DELETE"):
        return client.generic(method, url, headers=headers)
    body = json.dumps(BODIES.get(f"{method} {path}", {})).replace("{run_id}", world["run_id"])
    body = body.replace("{mlflow_experiment_id}", str(world["mlflow_experiment_id"]))
    return client.generic(method, url, body, content_type="application/json", headers=headers)


def _matches(expected, status: int) -> bool:
    if status >= 500:
        return False
    if expected == "ok":
        return status not in DENIED
    if expected == "reached":
        return status not in (401, 403)
    return status in (expected if isinstance(expected, tuple) else (expected,))


def test_each_identity_gets_what_the_policy_says(
    client, people, world, settings, django_capture_on_commit_callbacks
):
    settings.TOKEN_RATE_LIMIT = 10**6  # hundreds of refused tokens from one address, on purpose
    revoked = world["revoked_token"]
    wrong = []
    with django_capture_on_commit_callbacks(execute=False):
        # deletions last: the records they remove are the ones the other operations are called on
        for method, path in sorted(OPERATIONS, key=lambda operation: operation[0] == "DELETE"):
            policy = POLICY.get(f"{method} {path}")
            if policy is None:
                continue
            url = _path(path, world)
            for identity in IDENTITIES:
                response = _call(client, method, path, url, _headers(identity, people, world, revoked), world)
                if not _matches(policy[identity], response.status_code):
                    wrong.append(
                        f"{method} {path} as {identity}: {response.status_code} (policy {policy[identity]})"
                    )
    assert not wrong, "\n".join(wrong)


def test_a_jobs_own_worker_token_reaches_its_job_only(client, world, django_capture_on_commit_callbacks):
    own = {"Authorization": f"Bearer {world['job_token']}"}
    with django_capture_on_commit_callbacks(execute=False):
        for method, path in OPERATIONS:
            if POLICY.get(f"{method} {path}") not in (JOB_WORKER, INGEST):
                continue
            response = _call(client, method, path, _path(path, world), own, world)
            assert response.status_code not in DENIED and response.status_code < 500, (path, response.content)
    # The same token on another job's URL is refused.
    other_job = client.get(f"/api/v1/worker/jobs/{world['done_job_id']}/spec", headers=own)
    assert other_job.status_code == 403 and other_job.json()["error"]["code"] == "wrong_job_token"


def test_registry_rows_when_another_researcher_uses_the_same_model_id(
    client, people, world, tiny_model_dir, django_capture_on_commit_callbacks
):
    """Issue 17 item 1: `other` has a model of its own named like `owner`'s (model ids are per owner).
    Every registry operation `other` makes on that id reaches `other`'s model only: `owner`'s versions,
    thresholds, description, card, stage, sign-offs and exports stay as they were."""
    from experiments.models import TrainingJob
    from models_registry.models import ModelVersion, RegisteredModel
    from models_registry.services import model_version_create

    owner, other = people["owner"], people["other"]
    theirs = RegisteredModel.objects.get(owner=owner, model_id=world["model_id"])

    def owner_state() -> dict:
        theirs.refresh_from_db()
        versions = ModelVersion.objects.filter(registered=theirs).order_by("version")
        return {
            "model": (theirs.description, theirs.thresholds, theirs.limitations),
            "versions": [
                (v.version, v.stage, v.model_card, v.signoffs.count(), v.exports.count()) for v in versions
            ],
        }

    other_job = TrainingJob.objects.filter(owner=other).first()
    other_job.mark_running(worker="w")
    other_job.mark_succeeded(final_model_path=str(tiny_model_dir))
    with django_capture_on_commit_callbacks(execute=False):
        mine = model_version_create(job=other_job, model_id=world["model_id"])
    assert (mine.version, mine.registered.owner) == ("1.0.0", other)  # not 1.1.0 of owner's model
    before = owner_state()
    headers = {"Authorization": f"Bearer {other.raw_token}"}
    bodies = {
        "POST /api/v1/models/versions": {"job_id": other_job.public_id, "model_id": world["model_id"]},
        "PATCH /api/v1/models/{model_id}": {"description": "taken", "thresholds": {"accuracy": 0.01}},
        "POST /api/v1/models/{model_id}/versions/{version}/stage": {"stage": "staging"},
        "POST /api/v1/models/{model_id}/versions/{version}/signoff": {"note": "fine"},
        "PUT /api/v1/models/{model_id}/versions/{version}/model-card": {"text": "# taken\n\n" + "x" * 60},
        "POST /api/v1/models/{model_id}/versions/{version}/exports": {"merge": False},
    }
    called = 0
    with django_capture_on_commit_callbacks(execute=False):
        for method, path in OPERATIONS:
            if not path.startswith("/api/v1/models/"):
                continue
            url = _path(path, world)
            if method in ("GET", "DELETE"):
                response = client.generic(method, url, headers=headers)
            else:
                body = json.dumps(bodies.get(f"{method} {path}", {}))
                response = client.generic(method, url, body, content_type="application/json", headers=headers)
            called += 1
            assert response.status_code < 500, (method, path, response.content)
            if response.status_code < 300 and response.get("Content-Type", "").startswith("application/json"):
                payload = response.json()
                for row in payload if isinstance(payload, list) else [payload]:
                    if isinstance(row, dict) and "owner" in row:
                        assert row["owner"] == other.username, (method, path, row)
    assert called >= 11  # versions, PATCH, detail, metadata, gate, stage, signoff, card, exports, archive
    assert owner_state() == before
    # and the owner still sees exactly their own model
    listed = client.get("/api/v1/models", headers={"Authorization": f"Bearer {owner.raw_token}"}).json()
    assert [(m["model_id"], m["owner"], m["versions"]) for m in listed] == [
        (world["model_id"], owner.username, 1)
    ]
