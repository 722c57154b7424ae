"""Issue 17 item 2: every model reference goes through one resolver (experiments/model_refs.py).

Two researchers: A (`owner`) has a finished job whose final model lies in its folder under the artifact
root; B (`other`) names it by path at every entry point that takes a model (evaluations' model_path and
base_model, configs' model_base, estimates, compare-models, compare-versions, human evaluation, workflows)
and is refused with the same 404 body as for `/etc`, a folder that does not exist, a folder in a model
root without a model, a symlink or `..` out of a model root, A's job id and A's version. The playground
and the worker's spec do not run a base that B may not use (a config stored before the resolver).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DEMO_ROWS


def _finished_job(user, name, tiny_model_dir, capture_on_commit):
    """`user`'s dataset `name` and a succeeded LoRA job on it whose final model (the tiny model) lies in
    the job's own folder; no on-commit callbacks run (no worker)."""
    from datasets_app.services import dataset_prepare
    from experiments.services import job_start, training_config_create

    with capture_on_commit(execute=False):
        version = dataset_prepare(owner=user, name=name, content=DEMO_ROWS.read_bytes(), task_type="chat")
        config = training_config_create(
            owner=user, dataset_id=version.dataset.public_id, model_base="t4dm-tiny", approach="lora",
            hyperparams={"learning_rate": 3e-3, "epochs": 1},
        )  # fmt: skip
        job = job_start(owner=user, config=config)
    final = Path(job.output_dir) / "final"
    shutil.copytree(tiny_model_dir, final)
    job.mark_running(worker="w")
    job.mark_succeeded(final_model_path=str(final))
    return version, job


@pytest.fixture
def refs(people, artifact_root, tiny_model_dir, settings, tmp_path, django_capture_on_commit_callbacks):
    """A's job with a real model in <artifact root>/jobs/<job>/final, A's registered version, B's own
    dataset and finished job, and a model root holding a shared model, an empty folder and escapes."""
    from models_registry.services import model_version_create

    settings.T4DM_VERSIONING = {"auto_version": False, "compare_to_base": False}
    root = tmp_path / "model-root"
    root.mkdir()
    settings.MODEL_ROOTS = [root]
    shutil.copytree(tiny_model_dir, root / "shared-tiny")
    (root / "empty").mkdir()
    owner, other = people["owner"], people["other"]

    _, a_job = _finished_job(owner, "a-secret-set", tiny_model_dir, django_capture_on_commit_callbacks)
    a_version = model_version_create(job=a_job, model_id="a-model")
    b_dataset, b_job = _finished_job(other, "b-set", tiny_model_dir, django_capture_on_commit_callbacks)
    (root / "escape").symlink_to(Path(a_job.final_model_path))
    a_final = a_job.final_model_path
    probes = {
        "etc": "/etc",
        "nonexistent": "/nonexistent/model",
        "a_final_folder": a_final,
        "a_job_folder": a_job.output_dir,
        "dotdot_out_of_root": f"{root}/{'../' * (len(root.parts) - 1)}{a_final.lstrip('/')}",
        "symlink_out_of_root": str(root / "escape"),
        "root_folder_without_model": str(root / "empty"),
        "a_job_id": a_job.public_id,
        "a_version_ref": f"{a_version.model_id}@{a_version.version}",
        "relative_path": "experiments/training",  # a folder relative to the server, not a hub id
    }
    return {
        "a": owner,
        "b": other,
        "a_job": a_job,
        "b_job": b_job,
        "b_dataset": b_dataset.dataset.public_id,
        "root": root,
        "probes": probes,
    }


def _refused_alike(responses: dict[str, object], field: str) -> dict:
    """Every response is the same 404 model_not_found body, naming only the field."""
    bodies = {name: (r.status_code, r.json()) for name, r in responses.items()}
    first = next(iter(bodies.values()))
    assert first[0] == 404, bodies
    assert first[1]["error"]["code"] == "model_not_found", bodies
    assert first[1]["error"]["message"].startswith(f"{field}: "), bodies
    assert first[1]["error"]["details"] == {"field": field}
    different = {name: body for name, body in bodies.items() if body != first}
    assert not different, f"answers differ, so they tell what exists: {different} vs {first}"
    for probe in ("/etc", "/nonexistent", "does not exist", "holds neither", "a-model", "job-001 "):
        assert probe not in first[1]["error"]["message"]
    return first[1]


def test_evaluations_refuse_another_owners_folder_as_base_model_and_model_path(api, refs):
    from experiments.models import Evaluation

    b, dataset = refs["b"], refs["b_dataset"]
    as_base = {
        name: api.post(
            b, "/evaluations", {"model_path": "t4dm-tiny", "base_model": probe, "test_dataset": dataset}
        )
        for name, probe in refs["probes"].items()
    }
    as_model = {
        name: api.post(b, "/evaluations", {"model_path": probe, "test_dataset": dataset})
        for name, probe in refs["probes"].items()
    }

    _refused_alike(as_base, "base_model")
    _refused_alike(as_model, "model_path")
    assert not Evaluation.objects.exists()


def test_configs_and_estimates_refuse_another_owners_folder_as_model_base(api, refs):
    from experiments.models import TrainingConfig

    b = refs["b"]
    before = TrainingConfig.objects.count()
    configs = {
        name: api.post(b, "/configs", {"dataset_id": refs["b_dataset"], "model_base": probe})
        for name, probe in refs["probes"].items()
    }
    estimates = {
        name: api.post(b, "/estimate", {"model_base": probe}) for name, probe in refs["probes"].items()
    }

    assert _refused_alike(configs, "model_base") == _refused_alike(estimates, "model_base")
    assert TrainingConfig.objects.count() == before


def test_compare_models_and_versions_refuse_another_owners_models(api, refs):
    b = refs["b"]
    compare = {
        name: api.post(
            b,
            "/compare-models",
            {
                "models": ["t4dm-tiny", probe],
                "test_cases": [{"prompt": "Hi", "expected": "Hello"}],
                "task_type": "completion",
            },
        )  # fmt: skip
        for name, probe in refs["probes"].items()
    }
    versions = {
        name: api.post(b, "/compare-versions", {"version_a": "t4dm-tiny", "version_b": probe})
        for name, probe in refs["probes"].items()
    }

    _refused_alike(compare, "models")
    _refused_alike(versions, "version_b")


def test_human_eval_setup_refuses_another_owners_models(api, refs, people):
    from experiments.human_eval.models import HumanEvalTask

    b, evaluator = refs["b"], people["evaluator"]
    responses = {
        name: api.post(
            b,
            "/human-eval/tasks",
            {"evaluators": [evaluator.username], "model_path": probe, "eval_questions": ["What is T4DM?"]},
        )  # fmt: skip
        for name, probe in refs["probes"].items()
    }

    _refused_alike(responses, "model_path")
    assert not HumanEvalTask.objects.filter(owner=b).exists()


def test_workflows_refuse_another_owners_folder_as_model_base(api, refs):
    from experiments.workflows.models import Workflow

    b = refs["b"]
    responses = {
        name: api.post(
            b, "/workflows", {"source": "dataset", "dataset_id": refs["b_dataset"], "model_base": probe}
        )
        for name, probe in refs["probes"].items()
    }

    _refused_alike(responses, "model_base")
    assert not Workflow.objects.filter(owner=b).exists()


def test_what_the_sharing_rule_and_the_roots_allow_is_still_accepted(
    api, refs, people, tiny_model_dir, settings, monkeypatch
):
    a, b, admin = refs["a"], refs["b"], people["admin"]
    dataset, root = refs["b_dataset"], refs["root"]
    allowed = [
        {"model_path": refs["b_job"].public_id},  # B's own job
        {"model_path": "t4dm-tiny"},  # a built-in by name
        {"model_path": str(tiny_model_dir)},  # a built-in by path
        {"model_path": str(root / "shared-tiny")},  # a folder in a model root
        {"model_path": "shared-tiny"},  # ... by its name
        {"model_path": f"{root}/empty/../shared-tiny"},  # `..` that stays inside the root
        {"model_path": "t4dm-tiny", "base_model": str(root / "shared-tiny")},
    ]
    for payload in allowed:
        response = api.post(b, "/evaluations", {**payload, "test_dataset": dataset})
        assert response.status_code == 202, (payload, response.json())
    assert api.post(
        b, "/evaluations", {"model_path": str(root / "shared-tiny"), "test_dataset": dataset}
    ).json()["model_path"] == str((root / "shared-tiny").resolve())
    # A uses its own job, and an admin may use anyone's job by id (never by path).
    assert api.post(a, "/evaluations", {"model_path": refs["a_job"].public_id}).status_code == 202
    assert api.post(admin, "/evaluations", {"model_path": refs["a_job"].public_id}).status_code == 202
    admin_by_path = api.post(admin, "/evaluations", {"model_path": refs["a_job"].final_model_path})
    assert admin_by_path.status_code == 404
    # configs: a built-in, a hub id (where workers can download it: T4DM_HUB_MODELS=1), a model-root folder
    settings.HUB_MODELS = True
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for base in ("t4dm-tiny", "meta-llama/Meta-Llama-3-8B", str(root / "shared-tiny")):
        response = api.post(b, "/configs", {"dataset_id": dataset, "model_base": base})
        assert response.status_code == 201, (base, response.json())


def test_the_worker_spec_does_not_train_on_a_base_its_owner_may_not_use(
    refs, tiny_model_dir, django_capture_on_commit_callbacks
):
    """A config stored before the resolver existed (model_base: A's folder) is refused when B's job runs."""
    from experiments.model_refs import ModelUnavailable
    from experiments.models import TrainingConfig
    from experiments.services import job_spec_for_worker, job_start

    config = TrainingConfig.objects.filter(owner=refs["b"]).first()
    TrainingConfig.objects.filter(pk=config.pk).update(model_base=refs["a_job"].final_model_path)
    config.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=refs["b"], config=config)

    with pytest.raises(ModelUnavailable):
        job_spec_for_worker(job=job)
    TrainingConfig.objects.filter(pk=config.pk).update(model_base="t4dm-tiny")
    job.refresh_from_db()
    assert job_spec_for_worker(job=job)["model_base"] == str(tiny_model_dir.resolve())


def test_a_job_whose_stored_path_lies_in_another_jobs_folder_is_refused(api, refs):
    """A final_model_path reported into A's folder (before worker tokens were scoped) is not evaluated."""
    from experiments.models import TrainingJob

    b_job = refs["b_job"]
    TrainingJob.objects.filter(pk=b_job.pk).update(final_model_path=refs["a_job"].final_model_path)

    response = api.post(refs["b"], "/evaluations", {"model_path": b_job.public_id})

    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


@pytest.mark.django_db(transaction=True)
def test_the_playground_does_not_chat_with_a_base_that_is_not_the_users(
    people, artifact_root, tiny_model_dir, settings, tmp_path, django_capture_on_commit_callbacks
):
    """B's version whose config (stored before the resolver) names A's folder as its base: the page
    shows the name, but the base side has nothing to run; B's own side still does."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from experiments.models import TrainingConfig
    from models_registry.services import model_version_create
    from t4dm_site.asgi import application

    settings.T4DM_VERSIONING = {"auto_version": False, "compare_to_base": False}
    owner, other = people["owner"], people["other"]
    a_folder = Path(artifact_root) / "jobs" / "job-a-final"
    shutil.copytree(tiny_model_dir, a_folder)
    _, job = _finished_job(other, "b-set", tiny_model_dir, django_capture_on_commit_callbacks)
    TrainingConfig.objects.filter(pk=job.config_id).update(model_base=str(a_folder))
    job.refresh_from_db()
    model_version = model_version_create(job=job, model_id="b-model")
    assert owner is not None

    async def chat() -> list[dict]:
        communicator = WebsocketCommunicator(
            application,
            f"/ws/playground/{model_version.model_id}/{model_version.version}/",
            headers=[
                (b"host", b"127.0.0.1"),
                (b"origin", b"http://127.0.0.1"),
                (b"authorization", f"Bearer {other.raw_token}".encode()),
            ],
        )
        connected, _ = await communicator.connect()
        assert connected
        ready = await communicator.receive_json_from(timeout=10)
        await communicator.send_json_to(
            {"type": "generate", "messages": [{"role": "user", "content": "hi"}], "sides": ["base"]}
        )
        answer = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        await asyncio.sleep(0)
        return [ready, answer]

    ready, answer = async_to_sync(chat)()

    assert ready["type"] == "ready"
    assert answer == {"type": "error", "side": "base", "message": "nothing to run for 'base'"}


def test_hostile_references_are_refused_not_crashed(api, refs):
    """Odd references get the same 4xx, never a 500 (no NUL byte reaches os.stat, no huge id the database)."""
    b, dataset = refs["b"], refs["b_dataset"]
    hostile = [
        "/etc\u0000/passwd",
        "name\u0000",
        "x" * 5000,
        "/" + "x" * 5000,
        "job-99999999999999999999999",
        "job-1/step-99999999999999999999999",
        "../../etc",
        "~/models",
        "a-model@1.0.0\u0000",
        f"{refs['root']}/../model-root/../../..",
    ]
    for ref in hostile:
        for payload in ({"model_path": ref}, {"model_path": "t4dm-tiny", "base_model": ref}):
            response = api.post(b, "/evaluations", {**payload, "test_dataset": dataset})
            assert response.status_code == 404, (ref[:40], response.status_code)
            assert response.json()["error"]["code"] == "model_not_found"
        response = api.post(b, "/configs", {"dataset_id": dataset, "model_base": ref})
        assert response.status_code in (404, 422), (ref[:40], response.status_code)  # 422: over max_length


def test_dataset_tokenizers_come_only_from_models_the_resolver_allows(api, refs, tiny_model_dir):
    """A dataset's `base_model` (whose tokenizer counts tokens) is no way to read another owner's folder
    or to tell which server folders exist: the same 404 for all, and a built-in still works."""
    b = refs["b"]
    rows = (
        b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}\n'
        * 12
    )
    probes = {k: v for k, v in refs["probes"].items() if k not in ("a_job_id", "a_version_ref")}
    validated = {
        name: api.upload(b, "/datasets/validate", content=rows, base_model=probe)
        for name, probe in probes.items()
    }

    _refused_alike(validated, "base_model")
    for allowed in ("t4dm-tiny", str(tiny_model_dir), str(refs["root"] / "shared-tiny")):
        response = api.upload(b, "/datasets/validate", content=rows, base_model=allowed)
        assert response.status_code == 200, (allowed, response.json())


def test_a_job_trained_on_a_base_its_user_may_not_use_is_not_evaluated(api, refs):
    """B's job whose config (stored before the resolver) names A's folder as its base: evaluating it
    would load A's model as the base (also from the adapter's own adapter_config.json), so it is refused."""
    from experiments.models import TrainingConfig

    b_job = refs["b_job"]
    TrainingConfig.objects.filter(pk=b_job.config_id).update(model_base=refs["a_job"].final_model_path)

    response = api.post(refs["b"], "/evaluations", {"model_path": b_job.public_id})

    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
