"""The evaluation pages name the model and the base as the caller did (job-001/step-50, t4dm-tiny), never
by the folders the worker loaded (issue 19: "server paths shown instead of model/version names")."""

from __future__ import annotations

from experiments.model_refs import builtin_models
from experiments.models import Checkpoint, Evaluation, EvaluationStatus, TrainingJob


def test_the_detail_and_list_pages_show_names_not_server_paths(
    client, researcher, demo_config, artifact_root
):
    job = TrainingJob.objects.create(owner=researcher, config=demo_config, experiment=demo_config.experiment)
    folder = str(artifact_root / "jobs" / job.public_id / "checkpoint-50")
    checkpoint = Checkpoint.objects.create(job=job, step=50, path=folder)
    evaluation = Evaluation.objects.create(
        owner=researcher,
        job=job,
        checkpoint=checkpoint,
        model_path=folder,
        base_model=str(builtin_models()["t4dm-tiny"]),
        dataset_version=demo_config.dataset_version,
        task_type="chat",
        status=EvaluationStatus.SUCCEEDED,
        metrics={"perplexity": 12.5},
    )
    client.force_login(researcher)
    name = f"{job.public_id}/step-50"

    detail = client.get(f"/evaluations/{evaluation.public_id}/").content.decode()
    assert f'<span class="mono" id="eval-model">{name}</span>' in detail
    assert '<span class="mono" id="eval-base">t4dm-tiny</span>' in detail
    listing = client.get("/evaluations/").content.decode()
    assert name in listing
    for page in (detail, listing):
        assert str(artifact_root) not in page and "checkpoint-50" not in page
