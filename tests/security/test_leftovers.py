"""Issue 17 leftovers: an admin's registry buttons act on the version shown, an evaluation's own
pass/fail cannot be loosened by its request, and dataset files follow the configured umask."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from models_registry.services import model_version_auto_create
from tests.models_registry.conftest import (  # noqa: F401 (the registry's fixtures: real trained jobs)
    _no_compare_to_base,
    make_config,
    succeeded_job,
    trained_final,
)

pytestmark = pytest.mark.django_db


# --- (a) admin Evaluate / Compare on another owner's model ---------------------------------------------


@pytest.fixture
def two_owners_same_model_id(make_user, make_config, succeeded_job):  # noqa: F811
    """ada (admin) and olga both have t4dm-knowledge 1.0.0 and 1.0.1, each from their own jobs."""
    admin, owner = make_user("ada", role="admin"), make_user("olga")
    versions = {}
    for user in (admin, owner):
        first = model_version_auto_create(job=succeeded_job(make_config(owner=user)))
        second = model_version_auto_create(job=succeeded_job(make_config(owner=user, lora_r=8)))
        assert (first.ref, second.ref) == ("t4dm-knowledge@1.0.0", "t4dm-knowledge@1.0.1")
        versions[user.username] = (first, second)
    return admin, owner, versions


def test_admin_evaluate_on_another_owners_version_evaluates_that_version(
    client, two_owners_same_model_id, django_capture_on_commit_callbacks
):
    from experiments.models import Evaluation

    # given: the admin looks at olga's 1.0.0, and has a 1.0.0 of the same model id themselves
    admin, owner, versions = two_owners_same_model_id
    client.force_login(admin)

    # when
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/models/t4dm-knowledge/1.0.0/evaluate/?owner=olga")

    # then: the evaluation runs olga's version (her job), not the admin's own
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302 and response.url == f"/evaluations/{evaluation.public_id}/"
    assert evaluation.job == versions["olga"][0].job
    assert evaluation.job.owner == owner


def test_admin_compare_on_another_owners_model_compares_that_owners_versions(
    client, two_owners_same_model_id, django_capture_on_commit_callbacks
):
    from experiments.models import Evaluation

    admin, owner, versions = two_owners_same_model_id
    client.force_login(admin)

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/models/t4dm-knowledge/compare/?owner=olga", {"version_a": "1.0.0", "version_b": "1.0.1"}
        )

    comparison = Evaluation.objects.get(kind="compare_versions")
    assert response.status_code == 302 and response.url == f"/evaluations/{comparison.public_id}/"
    assert comparison.job == versions["olga"][1].job and comparison.job.owner == owner


def test_a_researcher_cannot_name_another_owner_in_a_version_reference(
    api, two_owners_same_model_id, django_capture_on_commit_callbacks
):
    """The owner-qualified reference follows the sharing rule: olga cannot reach ada's version."""
    _, owner, _ = two_owners_same_model_id
    with django_capture_on_commit_callbacks(execute=False):
        refused = api.post(owner, "/evaluations", {"model_path": "ada/t4dm-knowledge@1.0.0"})
        own = api.post(owner, "/evaluations", {"model_path": "olga/t4dm-knowledge@1.0.0"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    assert own.status_code == 202, own.json()


# --- (b) an evaluation's own thresholds: the strictest of project and request -------------------------


def test_request_thresholds_tighten_but_never_loosen_the_projects(
    api, researcher, demo_config, settings, django_capture_on_commit_callbacks
):
    from experiments.evaluation.tasks import evaluate_task
    from experiments.models import Evaluation

    # given: the project allows perplexity up to 10
    settings.QUALITY_THRESHOLDS = {"perplexity": {"<=": 10}}
    dataset_id = demo_config.dataset_version.dataset.public_id

    # when: one request tries to loosen it, another tightens it and adds a metric
    with django_capture_on_commit_callbacks(execute=False):
        loose = api.post(
            researcher,
            "/evaluations",
            {
                "model_path": "t4dm-tiny",
                "test_dataset": dataset_id,
                "metrics": ["perplexity"],
                "compare_to_base": False,
                "max_samples": 2,
                "thresholds": {"perplexity": {"<=": 1e12}},
            },
        )
        tight = api.post(
            researcher,
            "/evaluations",
            {
                "model_path": "t4dm-tiny",
                "test_dataset": dataset_id,
                "thresholds": {"perplexity": {"<=": 5}, "rougeL": {">=": 0.5}},
            },
        )

    # then: the project's bound stays where the request is looser, the request's where it is stricter
    assert loose.status_code == 202 and tight.status_code == 202, (loose.json(), tight.json())
    assert loose.json()["thresholds"]["perplexity"] == {"<=": 10.0}
    assert tight.json()["thresholds"]["perplexity"] == {"<=": 5.0}
    assert tight.json()["thresholds"]["rougeL"] == {">=": 0.5}

    # and the evaluation's own pass/fail is judged on the project's bound: the untrained tiny model's
    # perplexity is far above 10, so the loosened request does not pass
    evaluate_task(Evaluation.objects.get(pk=int(loose.json()["evaluation_id"].split("-")[1])).pk)
    result = api.get(researcher, f"/evaluations/{loose.json()['evaluation_id']}").json()
    assert result["status"] == "succeeded", result["error"]
    checks = {c["metric"]: c for c in result["threshold_results"]}
    assert result["metrics"]["perplexity"] > 10
    assert checks["perplexity"]["threshold"] == 10.0 and checks["perplexity"]["passed"] is False
    assert result["thresholds_passed"] is False


# --- (c) dataset files follow T4DM_UMASK ---------------------------------------------------------------


def _modes(folder: Path) -> tuple[set[int], set[int]]:
    dirs = {stat.S_IMODE(folder.stat().st_mode)}
    files = set()
    for path in folder.rglob("*"):
        (dirs if path.is_dir() else files).add(stat.S_IMODE(path.stat().st_mode))
    return dirs, files


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"),
    [(0o077, 0o700, 0o600), (0o027, 0o750, 0o640), (0o022, 0o755, 0o644)],
)
def test_dataset_files_are_as_private_as_the_configured_umask(
    researcher, artifact_root, settings, umask, folder_mode, file_mode
):
    from datasets_app.services import dataset_prepare
    from tests.conftest import DEMO_ROWS

    # given: an operator shares dataset storage with a group (027), or keeps the default (077)
    settings.UMASK = umask

    # when
    version = dataset_prepare(owner=researcher, name="perm", content=DEMO_ROWS.read_bytes(), task_type="chat")

    # then: every dataset file and folder has the modes that umask allows, no more, no less
    dirs, files = _modes(Path(version.path))
    assert dirs == {folder_mode} and files == {file_mode}
