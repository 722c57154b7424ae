"""`T4DMCallback`: any HF Trainer script streams its logs to the T4DM dashboard.

    trainer = Trainer(..., callbacks=[T4DMCallback(server_url="http://t4dm:8000", token="t4dm_...")])

Without a `job_id` the callback opens a tracking-only run (a job on the dashboard, through the
MLflow-compatible endpoint) at train begin and finishes it at train end. Points go through the ingest
endpoint via `MetricReporter`: buffered, flushed in the background, retried with backoff while the
server is away and idempotent on (job, key, step), so a restart mid-run loses nothing.

Needs transformers: `pip install 't4dm-client[callback]'`.
"""

from __future__ import annotations

import math
import os

import httpx
from transformers import TrainerCallback

from t4dm.client import DEFAULT_SERVER_URL
from t4dm.reporter import MetricReporter

# HF Trainer's names → the names local T4DM jobs use, so curves line up on the dashboard.
RENAMES = {"eval_loss": "val_loss", "eval_accuracy": "val_accuracy"}
SKIPPED = {"total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


class T4DMCallback(TrainerCallback):
    def __init__(
        self,
        server_url: str | None = None,
        token: str | None = None,
        *,
        job_id: str | None = None,
        experiment_name: str = "Default",
        run_name: str | None = None,
        model_base: str | None = None,
        flush_interval: float = 0.25,
        max_backoff: float = 5.0,
        close_timeout: float = 300.0,
    ):
        self.server_url = (server_url or os.environ.get("T4DM_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/")
        self.token = token or os.environ.get("T4DM_API_TOKEN", "")
        self.job_id = job_id
        self.run_id: str | None = None
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.model_base = model_base
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.reporter: MetricReporter | None = None
        self.delivered_everything: bool | None = None

    # --- the tracking run --------------------------------------------------------------------------
    def _mlflow(self, path: str, payload: dict | None = None, method: str = "POST") -> dict:
        response = httpx.request(
            method,
            f"{self.server_url}/api/2.0/mlflow/{path}",
            json=payload if method == "POST" else None,
            params=payload if method == "GET" else None,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def _open_run(self, args) -> None:
        try:
            experiment_id = self._mlflow(
                "experiments/get-by-name", {"experiment_name": self.experiment_name}, "GET"
            )["experiment"]["experiment_id"]
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
            experiment_id = self._mlflow("experiments/create", {"name": self.experiment_name})[
                "experiment_id"
            ]
        tags = [{"key": "t4dm.source", "value": "T4DMCallback"}]
        if self.model_base:
            tags.append({"key": "t4dm.model_base", "value": self.model_base})
        run = self._mlflow(
            "runs/create",
            {
                "experiment_id": experiment_id,
                "run_name": self.run_name or getattr(args, "run_name", None),
                "tags": tags,
            },
        )["run"]
        self.run_id = run["info"]["run_id"]
        self.job_id = {t["key"]: t["value"] for t in run["data"]["tags"]}["t4dm.job_id"]
        params = [
            {"key": k, "value": str(v)[:6000]}
            for k, v in sorted(args.to_dict().items())
            if isinstance(v, int | float | str | bool) and k not in ("hub_token", "push_to_hub_token")
        ][:100]
        self._mlflow("runs/log-batch", {"run_id": self.run_id, "params": params})

    # --- TrainerCallback ---------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.reporter is not None:
            return
        if self.job_id is None:
            self._open_run(args)
        self.reporter = MetricReporter(
            self.server_url,
            self.job_id,
            self.token,
            flush_interval=self.flush_interval,
            max_backoff=self.max_backoff,
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.reporter is None or not logs:
            return
        values = {}
        for key, value in logs.items():
            if (
                key in SKIPPED
                or key == "epoch"
                or isinstance(value, bool)
                or not isinstance(value, int | float)
            ):
                continue
            if math.isfinite(value):
                values[RENAMES.get(key, key)] = float(value)
        if values:
            self.reporter.metrics(state.global_step, values, epoch=state.epoch)

    def on_train_end(self, args, state, control, **kwargs):
        if self.reporter is None:
            return
        self.delivered_everything = self.reporter.close(timeout=self.close_timeout)
        self.reporter = None
        if self.run_id:
            status = "FINISHED" if self.delivered_everything else "FAILED"
            self._mlflow("runs/update", {"run_id": self.run_id, "status": status})
