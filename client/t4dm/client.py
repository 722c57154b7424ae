"""httpx client for the T4DM REST API with the seed's operation names and signatures.

Each method returns the server's JSON (the seed's result shapes, typed in `t4dm.types`). Errors raise
`T4DMError` carrying the server's `{"error": {"code", "message", "details"}}`.

Retries: a 429 (rate limit) or a 502/503/504 (the server or its proxy is away) is retried for any
method, waiting what the server's `Retry-After` says or else an exponential backoff; a 500 and a
connection failure are retried only for requests that are safe to repeat (GET, HEAD, PUT, DELETE), so
a POST that may have been applied is never sent twice.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from t4dm.types import (
    DatasetResult,
    Evaluation,
    ExperimentComparison,
    ExperimentLog,
    JobEvent,
    MetricSeries,
    ModelExport,
    ModelSummary,
    ModelVersion,
    ResourceEstimate,
    TrainingConfig,
    TrainingJob,
    ValidationResult,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
RETRY_ANY_METHOD = {429, 502, 503, 504}
IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}


class T4DMError(Exception):
    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if not isinstance(error, dict):  # MLflow-style {"error_code", "message"} wrapped by _mlflow
            error = {}
        self.status = status
        self.code = error.get("code") or error.get("error_code")
        self.message = error.get("message") or (body if isinstance(body, str) else json.dumps(body))
        self.details = error.get("details")
        super().__init__(f"HTTP {status} {self.code}: {self.message}")


def _id(value: Any, key: str) -> str:
    """Accept a result dict (e.g. a TrainingConfig) wherever the seed passes the object, or its id."""
    return value[key] if isinstance(value, dict) else str(value)


def retry_after_seconds(header: str | None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class T4DM:
    def __init__(
        self,
        server_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ):
        self.server_url = (server_url or os.environ.get("T4DM_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/")
        self.token = token or os.environ.get("T4DM_API_TOKEN", "")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._http = httpx.Client(
            base_url=self.server_url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
            timeout=timeout,
        )

    # --- plumbing ------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, retried as the module docstring says. Returns the last response."""
        method = method.upper()
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError:
                if last or method not in IDEMPOTENT:
                    raise
                time.sleep(delay)
                continue
            retryable = response.status_code in RETRY_ANY_METHOD or (
                response.status_code >= 500 and method in IDEMPOTENT
            )
            if not retryable or last:
                return response
            waited = retry_after_seconds(response.headers.get("Retry-After"))
            time.sleep(min(self.max_backoff, waited) if waited is not None else delay)
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise T4DMError(response.status_code, body)
        return response.json() if response.content else None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> T4DM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _source(data_source: str) -> dict:
        """A local file is uploaded; anything else is a path under the server's import root."""
        path = Path(data_source)
        if path.is_file():
            return {"files": {"file": (path.name, path.read_bytes())}}
        return {"data": {"path": data_source}}

    # --- datasets -----------------------------------------------------------------------------------
    def prepare_dataset(
        self,
        data_source: str,
        format: str = "jsonl",
        task_type: str = "chat",
        *,
        timeout: float = 3600,
        poll: float = 1.0,
        **options: Any,
    ) -> DatasetResult:
        """The DatasetResult. A file above the server's T4DM_SYNC_PREPARE_BYTES is prepared on its
        dataset worker (202 and a task): this waits for the task (up to `timeout` seconds) and returns
        its result, or raises T4DMError with the task's error (e.g. the first bad row's line)."""
        source = self._source(data_source)
        data = {**source.get("data", {}), "format": format, "task_type": task_type, **options}
        answer = self.request("POST", "/datasets", data=data, files=source.get("files"))
        if not (isinstance(answer, dict) and answer.get("kind") == "prepare" and "task_id" in answer):
            return answer
        deadline = time.monotonic() + timeout
        wait = min(poll, 0.2)
        while answer["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dataset task {answer['task_id']} still {answer['status']} after {timeout} s"
                )
            time.sleep(wait)
            wait = min(poll, wait * 2)
            answer = self.request("GET", f"/datasets/tasks/{answer['task_id']}")
        if answer["status"] != "succeeded" or not answer.get("result"):
            details = dict(answer.get("error_details") or {})
            code = details.pop("code", None) or "dataset_task_failed"
            error = {"code": code, "message": answer.get("error") or answer["status"], "details": details}
            raise T4DMError(400, {"error": {**error, "task_id": answer["task_id"]}})
        return answer["result"]

    def validate_dataset(
        self, dataset_path: str, schema: dict | None = None, task_type: str = "chat"
    ) -> ValidationResult:
        if dataset_path.startswith("ds-"):
            return self.request("POST", f"/datasets/{dataset_path}/validate", json={"row_schema": schema})
        source = self._source(dataset_path)
        data = {**source.get("data", {}), "task_type": task_type}
        if schema is not None:
            data["json_schema"] = json.dumps(schema)
        return self.request("POST", "/datasets/validate", data=data, files=source.get("files"))

    def prepare_from_knowledge(
        self, knowledge_type: str, format: str = "chat", source: str | None = None
    ) -> dict:
        extra = self._source(source) if source else {}
        data = {**extra.get("data", {}), "knowledge_type": knowledge_type, "format": format}
        return self.request("POST", "/datasets/knowledge", data=data, files=extra.get("files"))

    def augment_dataset(self, dataset_id: str, methods: list[str] | None = None) -> dict:
        return self.request(
            "POST",
            f"/datasets/{dataset_id}/augment",
            json={"methods": methods or ["paraphrase", "backtranslate"]},
        )

    def clean_dataset(
        self, dataset_id: str, remove_duplicates: bool = True, fix_formatting: bool = True
    ) -> dict:
        return self.request(
            "POST",
            f"/datasets/{dataset_id}/clean",
            json={"remove_duplicates": remove_duplicates, "fix_formatting": fix_formatting},
        )

    def list_datasets(self) -> list[DatasetResult]:
        return self.request("GET", "/datasets")

    def dataset(self, dataset_id: str) -> DatasetResult:
        return self.request("GET", f"/datasets/{dataset_id}")

    # --- training -----------------------------------------------------------------------------------
    def configure_training(
        self,
        model_base: str,
        dataset_id: str,
        approach: str = "lora",
        hyperparams: dict | None = None,
        **options: Any,
    ) -> TrainingConfig:
        payload = {
            "model_base": model_base,
            "dataset_id": dataset_id,
            "approach": approach,
            "hyperparams": hyperparams,
        }
        return self.request("POST", "/configs", json={**payload, **options})

    def estimate_resources(self, config: dict | str) -> ResourceEstimate:
        return self.request("POST", "/estimate", json={"config_id": _id(config, "config_id")})

    def configure_early_stopping(
        self, config: dict | str, patience: int = 3, min_delta: float = 0.01, metric: str = "val_loss"
    ) -> dict:
        return self.request(
            "POST",
            f"/configs/{_id(config, 'config_id')}/early-stopping",
            json={"patience": patience, "min_delta": min_delta, "metric": metric},
        )

    def configure_checkpoints(
        self, config: dict | str, save_steps: int = 500, save_total_limit: int = 3, best_only: bool = False
    ) -> dict:
        return self.request(
            "POST",
            f"/configs/{_id(config, 'config_id')}/checkpoints",
            json={"save_steps": save_steps, "save_total_limit": save_total_limit, "best_only": best_only},
        )

    def start_training(self, config_id: str, resume_from: str | None = None) -> TrainingJob:
        return self.request(
            "POST", "/jobs", json={"config_id": _id(config_id, "config_id"), "resume_from": resume_from}
        )

    def monitor_training(self, job_id: str) -> TrainingJob:
        return self.request("GET", f"/jobs/{job_id}")

    def cancel_training(self, job_id: str) -> TrainingJob:
        return self.request("POST", f"/jobs/{job_id}/cancel")

    def resume_training(self, job_id: str, step: int | None = None) -> TrainingJob:
        return self.request(
            "POST", f"/jobs/{job_id}/resume", json={"step": step} if step is not None else None
        )

    def list_jobs(self, status: str | None = None) -> list[TrainingJob]:
        return self.request("GET", "/jobs", params={"status": status} if status else None)

    def job_events(self, job_id: str, after_id: int = 0) -> list[JobEvent]:
        """The job's log lines (status changes, worker messages) with id > after_id, oldest first."""
        return self.request("GET", f"/jobs/{job_id}/events", params={"after_id": after_id})

    def follow_job_events(self, job_id: str, *, poll: float = 1.0) -> Iterator[JobEvent]:
        """Yield log lines as they arrive until the job ends (then the last of them, and stop)."""
        after = 0
        while True:
            ended = self.monitor_training(job_id)["status"] in TERMINAL
            for event in self.job_events(job_id, after_id=after):
                after = max(after, event["id"])
                yield event
            if ended:
                return
            time.sleep(poll)

    def wait_for_job(self, job_id: str, *, timeout: float = 3600, poll: float = 1.0) -> TrainingJob:
        deadline = time.monotonic() + timeout
        while True:
            status = self.monitor_training(job_id)
            if status["status"] in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(poll)

    def metrics(self, job_id: str, key: str | None = None) -> MetricSeries:
        return self.request("GET", f"/jobs/{job_id}/metrics", params={"key": key} if key else None)

    def log_metrics(
        self, job_id: str, step: int, values: dict[str, float], *, epoch: float | None = None
    ) -> dict:
        now = time.time()
        points = [
            {"key": k, "step": int(step), "value": float(v), "wall_time": now, "epoch": epoch}
            for k, v in values.items()
        ]
        return self.request("POST", f"/ingest/jobs/{job_id}/metrics", json={"points": points})

    # --- evaluation ---------------------------------------------------------------------------------
    def evaluate_model(
        self, model_path: str, test_dataset: str, metrics: list[str] | None = None, **options: Any
    ) -> Evaluation:
        payload = {
            "model_path": model_path,
            "test_dataset": test_dataset,
            "metrics": metrics or ["accuracy", "perplexity"],
        }
        return self.request("POST", "/evaluations", json={**payload, **options})

    def evaluation(self, evaluation_id: str) -> Evaluation:
        return self.request("GET", f"/evaluations/{evaluation_id}")

    def wait_for_evaluation(
        self, evaluation_id: str, *, timeout: float = 3600, poll: float = 1.0
    ) -> Evaluation:
        deadline = time.monotonic() + timeout
        while True:
            result = self.evaluation(evaluation_id)
            if result["status"] in TERMINAL or time.monotonic() > deadline:
                return result
            time.sleep(poll)

    def compare_models(self, models: list[str], test_cases: list[dict]) -> Evaluation:
        return self.request("POST", "/compare-models", json={"models": models, "test_cases": test_cases})

    def compare_versions(self, version_a: str, version_b: str, test_dataset: str) -> Evaluation:
        return self.request(
            "POST",
            "/compare-versions",
            json={"version_a": version_a, "version_b": version_b, "test_dataset": test_dataset},
        )

    def setup_human_eval(
        self, model_path: str, eval_questions: list[str], criteria: list[str] | None = None
    ) -> dict:
        return self.request(
            "POST",
            "/human-eval/tasks",
            json={
                "models": [model_path],
                "eval_questions": eval_questions,
                "criteria": criteria or ["accuracy", "helpfulness", "safety"],
            },
        )

    # --- model registry -----------------------------------------------------------------------------
    def list_models(self) -> list[ModelSummary]:
        return self.request("GET", "/models")

    def model_versions(self, model_id: str) -> list[ModelVersion]:
        return self.request("GET", f"/models/{model_id}/versions")

    def register_model(self, job_id: str, model_id: str | None = None) -> ModelVersion:
        """Register a succeeded job's model as the next version (usually automatic)."""
        return self.request("POST", "/models/versions", json={"job_id": job_id, "model_id": model_id})

    def promote_model(
        self,
        model_id: str,
        version: str,
        stage: str = "production",
        *,
        reason: str = "",
        override: bool = False,
    ) -> ModelVersion:
        """Move a version to a stage. Production passes the deployment gate (409 `gate_failed` names
        what fails) unless an admin overrides with a reason."""
        return self.request(
            "POST",
            f"/models/{model_id}/versions/{version}/stage",
            json={"stage": stage, "reason": reason, "override": override},
        )

    def export_model(self, model_id: str, version: str, *, merge: bool = True) -> ModelExport:
        return self.request("POST", f"/models/{model_id}/versions/{version}/exports", json={"merge": merge})

    def download_export(self, export: ModelExport, destination: str | Path) -> Path:
        """Stream an export's .tar.gz to `destination` (a folder or a file path)."""
        destination = Path(destination)
        url = export["download_url"]
        if not url.startswith(("http://", "https://")):
            url = self.server_url + url
        with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise T4DMError(response.status_code, response.text)
            if destination.is_dir():
                disposition = response.headers.get("content-disposition", "")
                name = (
                    disposition.partition("filename=")[2].strip('"') or f"export-{export['export_id']}.tar.gz"
                )
                destination = destination / Path(name).name
            with destination.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        return destination

    # --- experiment tracking ------------------------------------------------------------------------
    def _mlflow(self, path: str, payload: dict) -> dict:
        response = self._send("POST", f"{self.server_url}/api/2.0/mlflow/{path}", json=payload)
        if response.status_code >= 400:
            raise T4DMError(response.status_code, {"error": response.json()})
        return response.json()

    def log_experiment(
        self, experiment_name: str, config: dict | str, results: dict | str, notes: str = ""
    ) -> ExperimentLog:
        """Record a finished run (its config and evaluation results) under an experiment, as a tracked run
        on the dashboard. `config`/`results` are the seed's dicts or their ids (cfg-…, eval-…)."""
        if isinstance(config, str):
            config = self.request("GET", f"/configs/{config}")
        if isinstance(results, str):
            results = self.request("GET", f"/evaluations/{results}")
        response = self._send(
            "GET",
            f"{self.server_url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": experiment_name},
        )
        if response.status_code == 200:
            experiment_id = response.json()["experiment"]["experiment_id"]
        else:
            experiment_id = self._mlflow("experiments/create", {"name": experiment_name})["experiment_id"]
        tags = [{"key": "mlflow.note.content", "value": notes}]
        for key in ("config_id", "evaluation_id", "model_base"):
            value = config.get(key) or results.get(key)
            if value:
                tags.append({"key": f"t4dm.{key}", "value": str(value)})
        run = self._mlflow(
            "runs/create", {"experiment_id": experiment_id, "run_name": experiment_name, "tags": tags}
        )
        run_id = run["run"]["info"]["run_id"]
        params = {
            **{k: v for k, v in config.items() if k != "hyperparams"},
            **(config.get("hyperparams") or {}),
        }
        metrics = {k: v for k, v in (results.get("metrics") or {}).items() if isinstance(v, int | float)}
        self._mlflow(
            "runs/log-batch",
            {
                "run_id": run_id,
                "params": [{"key": k, "value": str(v)[:6000]} for k, v in sorted(params.items())][:100],
                "metrics": [
                    {"key": k, "value": float(v), "step": 0, "timestamp": int(time.time() * 1000)}
                    for k, v in metrics.items()
                ],  # fmt: skip
            },
        )
        self._mlflow("runs/update", {"run_id": run_id, "status": "FINISHED"})
        job_id = {t["key"]: t["value"] for t in run["run"]["data"]["tags"]}["t4dm.job_id"]
        return {
            "experiment_id": experiment_id,
            "experiment_name": experiment_name,
            "run_id": run_id,
            "job_id": job_id,
            "config": config,
            "metrics": metrics,
            "notes": notes,
        }

    def compare_experiments(self, experiment_ids: list[str], metrics: list[str]) -> ExperimentComparison:
        """Compare runs: job ids (job-…) directly, experiment ids (exp-…) by all of their runs."""
        job_ids = [i for i in experiment_ids if i.startswith("job-")]
        for experiment_id in (i for i in experiment_ids if not i.startswith("job-")):
            name = self.request("GET", f"/experiments/{experiment_id}")["name"]
            runs = self.request("GET", "/runs", params={"q": name, "metric": ",".join(metrics)})
            job_ids += [r["job"]["job_id"] for r in runs if r["experiment_name"] == name]
        comparison = self.request(
            "GET", "/runs/compare", params={"job_ids": ",".join(dict.fromkeys(job_ids))}
        )
        wanted = set(metrics)
        return {
            "experiment_ids": experiment_ids,
            "runs": comparison["runs"],
            "parameters": comparison["parameters"],
            "differing": comparison["differing"],
            "metrics": [
                m for m in comparison["metrics"] if not wanted or m.get("key", m.get("metric")) in wanted
            ],
        }

    # --- API fine-tuning ----------------------------------------------------------------------------
    def finetune_openai(
        self, dataset_path: str, base_model: str = "gpt-4o-mini-2024-07-18", suffix: str = "t4dm-custom"
    ) -> dict:
        return self.request(
            "POST",
            "/finetune/openai",
            json={"dataset_path": dataset_path, "base_model": base_model, "suffix": suffix},
        )

    def finetune_anthropic(self, dataset_path: str, base_model: str, config: dict | None = None) -> dict:
        return self.request(
            "POST",
            "/finetune/anthropic",
            json={"dataset_path": dataset_path, "base_model": base_model, "config": config or {}},
        )
