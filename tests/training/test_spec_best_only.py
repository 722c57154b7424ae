"""checkpointing.best_only (issue 20 item 4): only the best checkpoint stays on disk (while the job
runs, the newest one too, for resume); the result, the job page, its log and the registry name the
same best step."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter
from experiments.training.tiny_model import CORPUS_DIR

KNOWLEDGE_CHAT = CORPUS_DIR / "knowledge_chat.jsonl"


class DiskReporter(MemoryReporter):
    """Records which checkpoint folders are on disk each time one is saved."""

    def __init__(self) -> None:
        super().__init__()
        self.on_disk: list[tuple[int, list[int]]] = []

    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> None:
        super().checkpoint(step=step, path=path, metrics=metrics)
        self.on_disk.append((step, _steps_on_disk(Path(path).parent)))


def _steps_on_disk(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*"))


def test_best_only_keeps_the_best_checkpoint_and_the_newest_until_the_end(make_spec) -> None:
    # given a learning rate high enough, and kept constant (a decaying one lets late steps settle lower
    # again), that val_loss goes back up after its best evaluation
    spec = make_spec(
        hyperparameters={"learning_rate": 1.0, "max_steps": 20, "lr_scheduler": "constant"},
        dataset={"train": str(KNOWLEDGE_CHAT), "validation": str(KNOWLEDGE_CHAT)},
        checkpointing={"save_steps": 4, "save_total_limit": 3, "best_only": True},
    )
    reporter = DiskReporter()

    # when
    result = train(spec, reporter)

    # then the best step is the lowest val_loss, not the last step
    val = {e["step"]: e["values"]["val_loss"] for e in reporter.metric_events if "val_loss" in e["values"]}
    best_step = min(val, key=val.get)
    assert best_step < 20, val
    assert result["best_step"] == best_step
    assert result["best_checkpoint"] == str(Path(spec["output_dir"]).resolve() / f"checkpoint-{best_step}")
    # while running: the best so far and the newest (for resume), nothing else
    for step, on_disk in reporter.on_disk:
        best_so_far = min((s for s in val if s <= step), key=val.get)
        assert on_disk == sorted({best_so_far, step}), (step, on_disk)
    # at the end: the best one only
    assert _steps_on_disk(Path(spec["output_dir"])) == [best_step]
    assert (Path(result["final_model_path"]) / "adapter_model.safetensors").is_file()


def test_without_best_only_the_best_is_still_named_and_kept(make_spec) -> None:
    """With a validation split the Trainer tracks the best checkpoint for every run (the job page and
    the registry mark it); rotation keeps it besides the newest ones."""
    spec = make_spec(
        hyperparameters={"learning_rate": 1.0, "max_steps": 20, "lr_scheduler": "constant"},
        dataset={"train": str(KNOWLEDGE_CHAT), "validation": str(KNOWLEDGE_CHAT)},
        checkpointing={"save_steps": 4, "save_total_limit": 2, "best_only": False},
    )
    reporter = MemoryReporter()

    result = train(spec, reporter)

    val = {e["step"]: e["values"]["val_loss"] for e in reporter.metric_events if "val_loss" in e["values"]}
    best_step = min(val, key=val.get)
    assert result["best_step"] == best_step
    assert _steps_on_disk(Path(spec["output_dir"])) == sorted({best_step, 20})


@pytest.mark.django_db
def test_the_job_page_log_and_registry_name_the_same_best_step(
    client, demo_config, django_capture_on_commit_callbacks
) -> None:
    from experiments import services
    from models_registry.models import ModelVersion

    config = services.training_config_set_checkpointing(
        config=demo_config, save_steps=4, save_total_limit=3, best_only=True
    )
    with django_capture_on_commit_callbacks(execute=False):
        job = services.job_start(owner=config.owner, config=config)
    spec = services.job_spec_for_worker(job=job)
    assert spec["checkpointing"]["best_only"] is True and spec["dataset"]["validation"]
    spec["hyperparameters"] = {
        **spec["hyperparameters"],
        "learning_rate": 1.0,
        "max_steps": 12,
        "batch_size": 4,
        "gradient_accumulation": 1,
        "lora_dropout": 0.0,
    }
    job.mark_running(worker="test-worker")
    reporter = MemoryReporter()

    result = train(spec, reporter)
    # what the worker reports over HTTP, through the same services its endpoints call
    for event in reporter.checkpoint_events:
        services.checkpoint_record(job=job, step=event["step"], path=event["path"], metrics=event["metrics"])
    with django_capture_on_commit_callbacks(execute=True):
        services.job_report_status(
            job=job, status="succeeded", final_model_path=result["final_model_path"], result=result
        )

    best_step = result["best_step"]
    assert best_step is not None
    assert list(job.checkpoints.filter(is_best=True).values_list("step", flat=True)) == [best_step]
    on_disk = sorted(int(p.name.split("-")[1]) for p in Path(result["output_dir"]).glob("checkpoint-*"))
    assert on_disk == [best_step]
    assert job.events.filter(message__contains=f"checkpoint-{best_step}").exists()  # the job's log
    client.force_login(job.owner)
    page = client.get(f"/jobs/{job.public_id}/").content.decode()
    assert f'data-step="{best_step}" class="best"' in page
    version = ModelVersion.objects.get(job=job)
    assert version.checkpoint is not None and version.checkpoint.step == best_step
