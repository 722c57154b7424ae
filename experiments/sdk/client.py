"""httpx client for the T4DM REST API with the seed's operation names and signatures.

Each method returns the server's JSON (the seed's result shapes). Errors raise `T4DMError` carrying the
server's `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"succeeded", "failed", "cancelled"}


class T4DMError(Exception):
    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code") or error.get("error_code")
        self.message = error.get("message") or (body if isinstance(body, str) else json.dumps(body))
        self.details = error.get("details")
        super().__init__(f"HTTP {status} {self.code}: {self.message}")


def _id(value: Any, key: str) -> str:
    """Accept a result dict (e.g. a TrainingConfig) wherever the seed passes the object, or its id."""
    return value[key] if isinstance(value, dict) else str(value)


class T4DM:
    def __init__(self, server_url: str | None = None, token: str | None = None, *, timeout: float = 60.0):
        self.server_url = (server_url or os.environ.get("T4DM_SERVER_URL") or "http://127.0.0.1:8000").rstrip(
            "/"
        )
        self.token = token or os.environ.get("T4DM_API_TOKEN", "")
        self._http = httpx.Client(
            base_url=self.server_url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
            timeout=timeout,
        )

    # --- plumbing ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
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
        self, data_source: str, format: str = "jsonl", task_type: str = "chat", **options: Any
    ) -> dict:
        source = self._source(data_source)
        data = {**source.get("data", {}), "format": format, "task_type": task_type, **options}
        return self.request("POST", "/datasets", data=data, files=source.get("files"))

    def validate_dataset(
        self, dataset_path: str, schema: dict | None = None, task_type: str = "chat"
    ) -> dict:
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

    # --- training -----------------------------------------------------------------------------------
    def configure_training(
        self,
        model_base: str,
        dataset_id: str,
        approach: str = "lora",
        hyperparams: dict | None = None,
        **options: Any,
    ) -> dict:
        payload = {
            "model_base": model_base,
            "dataset_id": dataset_id,
            "approach": approach,
            "hyperparams": hyperparams,
        }
        return self.request("POST", "/configs", json={**payload, **options})

    def estimate_resources(self, config: dict | str) -> dict:
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

    def start_training(self, config_id: str, resume_from: str | None = None) -> dict:
        return self.request(
            "POST", "/jobs", json={"config_id": _id(config_id, "config_id"), "resume_from": resume_from}
        )

    def monitor_training(self, job_id: str) -> dict:
        return self.request("GET", f"/jobs/{job_id}")

    def cancel_training(self, job_id: str) -> dict:
        return self.request("POST", f"/jobs/{job_id}/cancel")

    def resume_training(self, job_id: str, step: int | None = None) -> dict:
        return self.request(
            "POST", f"/jobs/{job_id}/resume", json={"step": step} if step is not None else None
        )

    def wait_for_job(self, job_id: str, *, timeout: float = 3600, poll: float = 1.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.monitor_training(job_id)
            if status["status"] in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(poll)

    def metrics(self, job_id: str, key: str | None = None) -> dict:
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
    ) -> dict:
        payload = {
            "model_path": model_path,
            "test_dataset": test_dataset,
            "metrics": metrics or ["accuracy", "perplexity"],
        }
        return self.request("POST", "/evaluations", json={**payload, **options})

    def evaluation(self, evaluation_id: str) -> dict:
        return self.request("GET", f"/evaluations/{evaluation_id}")

    def compare_models(self, models: list[str], test_cases: list[dict]) -> dict:
        return self.request("POST", "/compare-models", json={"models": models, "test_cases": test_cases})

    def compare_versions(self, version_a: str, version_b: str, test_dataset: str) -> dict:
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

    # --- experiment tracking ------------------------------------------------------------------------
    def _mlflow(self, path: str, payload: dict) -> dict:
        response = self._http.post(f"{self.server_url}/api/2.0/mlflow/{path}", json=payload)
        if response.status_code >= 400:
            raise T4DMError(response.status_code, {"error": response.json()})
        return response.json()

    def log_experiment(
        self, experiment_name: str, config: dict | str, results: dict | str, notes: str = ""
    ) -> dict:
        """Record a finished run (its config and evaluation results) under an experiment, as a tracked run
        on the dashboard. `config`/`results` are the seed's dicts or their ids (cfg-…, eval-…)."""
        if isinstance(config, str):
            config = self.request("GET", f"/configs/{config}")
        if isinstance(results, str):
            results = self.request("GET", f"/evaluations/{results}")
        response = self._http.get(
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

    def compare_experiments(self, experiment_ids: list[str], metrics: list[str]) -> dict:
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
