"""Model-version metadata for a knowledge store, in one call; version events for webhooks."""

from __future__ import annotations

from experiments.ingest import PointIn, metric_points_ingest
from experiments.integrations.models import WebhookDelivery
from experiments.integrations.services import webhook_subscription_create


def test_one_call_returns_everything_a_knowledge_store_keeps(
    api,
    researcher,
    admin,
    make_config,
    succeeded_job,
    finished_evaluation,
    django_capture_on_commit_callbacks,
):
    # given: a subscription to version events, a succeeded job with metrics and an evaluation
    webhook_subscription_create(owner=admin, url="http://127.0.0.1:9/hook", event_types=["model_version.*"])
    config = make_config()
    job = succeeded_job(config)
    metric_points_ingest(
        job=job, points=[PointIn("loss", 1, 2.5), PointIn("loss", 2, 1.5), PointIn("val_loss", 2, 1.9)]
    )
    evaluation = finished_evaluation(job)

    # when: the job's model is registered and promoted to staging
    with django_capture_on_commit_callbacks(execute=False):
        created = api.post(
            researcher, "/models/versions", {"job_id": job.public_id, "model_id": "kb-assistant"}
        )
        assert created.status_code == 201, created.content
        staged = api.post(
            researcher, "/models/kb-assistant/versions/1.0.0/stage", {"stage": "staging", "reason": "try it"}
        )
        assert staged.status_code == 200, staged.content
    response = api.get(researcher, "/models/kb-assistant/versions/1.0.0/metadata")

    # then
    assert response.status_code == 200, response.content
    meta = response.json()
    assert (meta["model_id"], meta["version"], meta["ref"], meta["stage"]) == (
        "kb-assistant",
        "1.0.0",
        "kb-assistant@1.0.0",
        "staging",
    )
    assert meta["base_model"] == "t4dm-tiny" and meta["approach"] == "lora" and meta["task_type"] == "chat"
    dataset = meta["dataset"]
    assert dataset["dataset_id"] == config.dataset_version.dataset.public_id and dataset["version"] == 1
    assert (
        dataset["statistics"]["train_samples"] > 0
        and dataset["content_hash"]
        and dataset["splits"]["train"]["rows"]
    )
    assert (
        meta["config"]["config_id"] == config.public_id
        and meta["config"]["hyperparameters"]["learning_rate"] == 3e-3
    )
    series = meta["training_metrics"]["series"]
    assert (
        series["loss"] == {"final": 1.5, "min": 1.5, "max": 2.5, "last_step": 2}
        and series["val_loss"]["final"] == 1.9
    )
    assert meta["training_metrics"]["status"] == "succeeded"
    assert meta["evaluation_results"]["evaluation_id"] == evaluation.public_id
    assert meta["evaluation_results"]["metrics"] == {"accuracy": 0.92, "perplexity": 8.5}
    assert meta["artifacts"]["model"] == job.final_model_path and meta["job_id"] == job.public_id
    assert [(h["from"], h["to"]) for h in meta["stage_history"]][-1] == ("none", "staging")

    events = list(WebhookDelivery.objects.order_by("pk").values_list("event_type", "payload"))
    assert [e for e, _ in events] == ["model_version.created", "model_version.stage_changed"]
    assert events[1][1]["from_stage"] == "none" and events[1][1]["to_stage"] == "staging"
    assert events[0][1]["metadata_url"] == "/api/v1/models/kb-assistant/versions/1.0.0/metadata"

    missing = api.get(researcher, "/models/kb-assistant/versions/9.9.9/metadata")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
