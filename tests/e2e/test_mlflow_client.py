"""The real `mlflow` client against a live T4DM: experiments, runs, params, metrics with steps, and an
HF Trainer run with report_to="mlflow" on the tiny model; the points are on the dashboard's API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.e2e


def _run_script(platform, script: str, tmp_path, **env) -> str:
    """Each client runs in its own process: mlflow keeps global state (tracking URI, active run)."""
    path = tmp_path / "client.py"
    path.write_text(textwrap.dedent(script))
    result = subprocess.run(
        [sys.executable, str(path)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": platform.base_url,
            "MLFLOW_TRACKING_TOKEN": platform.token,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_mlflow_client_logs_params_and_metrics(embedded_platform, tmp_path):
    # given/when: the mlflow client logs a run with params and stepped metrics
    run_id, job_id = _run_script(
        embedded_platform,
        """
        import mlflow
        mlflow.set_tracking_uri(__import__("os").environ["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment("mlflow-e2e")
        with mlflow.start_run(run_name="manual") as run:
            mlflow.log_param("lr", 0.01)
            mlflow.log_params({"epochs": 3, "optimizer": "adamw"})
            mlflow.set_tag("team", "docs")
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"val_loss": 0.9, "accuracy": 0.5}, step=4)
        client = mlflow.MlflowClient()
        fetched = client.get_run(run.info.run_id)
        assert fetched.data.params == {"lr": "0.01", "epochs": "3", "optimizer": "adamw"}, fetched.data.params
        assert fetched.data.metrics["loss"] == 0.2 and fetched.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in history] == [0, 1, 2, 3, 4]
        experiment = mlflow.get_experiment_by_name("mlflow-e2e")
        found = mlflow.search_runs([experiment.experiment_id], filter_string="params.optimizer = 'adamw' and metrics.loss < 0.5", output_format="list")
        assert [r.info.run_id for r in found] == [run.info.run_id]
        assert mlflow.search_runs([experiment.experiment_id], filter_string="tags.team = 'other'", output_format="list") == []
        assert any(e.name == "mlflow-e2e" for e in mlflow.search_experiments())
        print(run.info.run_id, fetched.data.tags["t4dm.job_id"])
        """,
        tmp_path,
    ).split()
    # then: the run is a finished job on the dashboard with its curve
    with embedded_platform.http() as http:
        job = http.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded"
        series = http.get(f"/jobs/{job_id}/metrics").json()
    assert [p[0] for p in series["series"]["loss"]] == [0, 1, 2, 3, 4]
    assert series["series"]["loss"][-1][1] == pytest.approx(0.2)
    assert set(series["series"]) == {"loss", "val_loss", "accuracy"}


def test_hf_trainer_reports_to_mlflow(embedded_platform, tmp_path, tiny_model_dir):
    job_id = _run_script(
        embedded_platform,
        f"""
        import mlflow, torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
        tokenizer = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})
        model = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r})
        texts = ["T4DM trains models offline.", "The dashboard shows live loss curves."] * 8
        class Rows(torch.utils.data.Dataset):
            def __len__(self): return len(texts)
            def __getitem__(self, i):
                ids = tokenizer(texts[i], truncation=True, max_length=32)["input_ids"]
                return {{"input_ids": ids, "labels": ids}}
        def collate(rows):
            width = max(len(r["input_ids"]) for r in rows)
            pad = tokenizer.pad_token_id or 0
            ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in rows])
            labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
            return {{"input_ids": ids, "labels": labels, "attention_mask": (labels != -100).long()}}
        args = TrainingArguments(output_dir={str(tmp_path / "out")!r}, max_steps=8, logging_steps=1,
            per_device_train_batch_size=4, learning_rate=3e-3, report_to=["mlflow"], save_strategy="no",
            use_cpu=True, run_name="hf-trainer")
        Trainer(model=model, args=args, train_dataset=Rows(), data_collator=collate).train()
        run = mlflow.last_active_run()
        print(mlflow.MlflowClient().get_run(run.info.run_id).data.tags["t4dm.job_id"])
        """,
        tmp_path,
        MLFLOW_EXPERIMENT_NAME="hf-trainer-e2e",
    )
    with embedded_platform.http() as http:
        job = http.get(f"/jobs/{job_id}").json()
        series = http.get(f"/jobs/{job_id}/metrics", params={"key": "loss"}).json()
    # then: the Trainer's loss at every logged step is a point of the job's "loss" series
    assert job["status"] == "succeeded"
    assert [point[0] for point in series["series"]["loss"]] == list(range(1, 9))
