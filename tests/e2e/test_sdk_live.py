"""The SDK and T4DMCallback against a live T4DM, including a server that is down for a while mid-run."""

from __future__ import annotations

import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

from experiments.sdk import T4DM, T4DMCallback, T4DMError
from tests.conftest import DEMO_ROWS
from tests.platform import Platform, free_port

pytestmark = pytest.mark.e2e


def test_sdk_prepares_configures_trains_and_monitors(embedded_platform):
    with T4DM(embedded_platform.base_url, token=embedded_platform.token) as t4dm:
        validation = t4dm.validate_dataset(str(DEMO_ROWS))
        assert validation["status"] in {"passed", "warning"}, validation
        dataset = t4dm.prepare_dataset(str(DEMO_ROWS), task_type="chat")
        assert dataset["dataset_id"].startswith("ds-") and dataset["task_type"] == "chat"
        config = t4dm.configure_training(
            "t4dm-tiny",
            dataset["dataset_id"],
            hyperparams={"learning_rate": 3e-3, "epochs": 2, "batch_size": 8, "gradient_accumulation": 1},
        )
        assert config["config_id"].startswith("cfg-")
        assert "estimated_time" in str(t4dm.estimate_resources(config)) or t4dm.estimate_resources(config)
        job = t4dm.start_training(config["config_id"])
        assert job["status"] in {"queued", "running"}
        final = t4dm.wait_for_job(job["job_id"], timeout=240, poll=0.5)
        assert final["status"] == "succeeded" and final["job_id"] == job["job_id"]
        assert t4dm.monitor_training(job["job_id"])["status"] == "succeeded"
        assert t4dm.metrics(job["job_id"])["series"]["loss"]
        with pytest.raises(T4DMError) as missing:
            t4dm.monitor_training("job-99999")
        assert missing.value.status == 404 and missing.value.code == "not_found"


class _Rows(torch.utils.data.Dataset):
    def __init__(self, tokenizer):
        self.items = [tokenizer("T4DM keeps every point.")["input_ids"][:24] for _ in range(16)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": torch.tensor(self.items[i]), "labels": torch.tensor(self.items[i])}


class _ServerOutage(TrainerCallback):
    """Stops the server after step `down_at` and starts it again (same port, same database) at train end."""

    def __init__(self, server: Platform, port: int, log_dir):
        self.server, self.port, self.log_dir, self.down_at = server, port, log_dir, 3
        self.steps_while_down = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.down_at:
            time.sleep(0.5)  # let the first points land
            self.server.stop()
            self.server.processes.clear()
        elif state.global_step > self.down_at:
            self.steps_while_down += 1

    def on_train_end(self, args, state, control, **kwargs):
        _spawn_web(self.server, self.port, self.log_dir / "web-again.log")


def _spawn_web(server: Platform, port: int, log) -> None:
    server.spawn(
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "t4dm_site.asgi:application",
        log=log,
    )


def test_callback_streams_a_trainer_run_and_loses_nothing_while_the_server_is_down(
    embedded_platform, tiny_model_dir, tmp_path
):
    port = free_port()
    server = Platform(base_url=f"http://127.0.0.1:{port}", env=embedded_platform.env)
    _spawn_web(server, port, tmp_path / "web.log")
    server.wait_until_up()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    outage = _ServerOutage(server, port, tmp_path)
    callback = T4DMCallback(
        server.base_url,
        embedded_platform.token,
        experiment_name="sdk-callback",
        flush_interval=0.05,
        max_backoff=0.5,
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=12,
        logging_steps=1,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    try:
        Trainer(model=model, args=args, train_dataset=_Rows(tokenizer), callbacks=[outage, callback]).train()
    finally:
        server.stop()
    # then: steps ran while the server was down, and every logged step reached the dashboard, once
    assert outage.steps_while_down >= 5
    assert callback.delivered_everything is True
    with T4DM(embedded_platform.base_url, token=embedded_platform.token) as t4dm:
        job = t4dm.monitor_training(callback.job_id)
        loss = t4dm.metrics(callback.job_id, key="loss")["series"]["loss"]
    assert [point[0] for point in loss] == list(range(1, 13))
    assert job["status"] == "succeeded"


def test_log_experiment_and_compare_experiments(embedded_platform):
    with T4DM(embedded_platform.base_url, token=embedded_platform.token) as t4dm:
        config = {"config_id": "cfg-x", "model_base": "t4dm-tiny", "hyperparams": {"learning_rate": 0.001}}
        first = t4dm.log_experiment(
            "sdk-log", config, {"metrics": {"accuracy": 0.8, "loss": 0.5}}, notes="baseline"
        )
        second = t4dm.log_experiment(
            "sdk-log",
            {**config, "hyperparams": {"learning_rate": 0.01}},
            {"metrics": {"accuracy": 0.9, "loss": 0.4}},
        )
        assert first["experiment_id"] == second["experiment_id"] and first["job_id"] != second["job_id"]
        assert t4dm.monitor_training(first["job_id"])["status"] == "succeeded"
        comparison = t4dm.compare_experiments([first["job_id"], second["job_id"]], ["accuracy"])
    assert [r["job_id"] for r in comparison["runs"]] == [first["job_id"], second["job_id"]]
    assert [m["key"] for m in comparison["metrics"]] == ["accuracy"]
    assert comparison["metrics"][0]["runs"][1]["final_delta"] == pytest.approx(0.1)
    assert "learning_rate" in comparison["differing"]
