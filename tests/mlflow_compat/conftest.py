"""The MLflow API's callers: `ml`, the researcher's calls in-process (Django's test client), and
`tracking`, the real `mlflow` client against the live server as the researcher."""

from __future__ import annotations

import gc
import json

import pytest


def mlflow_caller(client, user):
    """Calls to /api/2.0/mlflow/ as `user` through Django's test client."""
    headers = {"Authorization": f"Bearer {user.raw_token}"}

    class ML:
        def get(self, path, **params):
            return client.get(f"/api/2.0/mlflow/{path}", params, headers=headers)

        def post(self, path, data=None):
            body = data if isinstance(data, (str, bytes)) else json.dumps(data or {})
            return client.post(
                f"/api/2.0/mlflow/{path}", body, content_type="application/json", headers=headers
            )

        def experiment(self, name: str) -> str:
            return self.post("experiments/create", {"name": name}).json()["experiment_id"]

        def run(self, experiment_id: str, **fields) -> str:
            created = self.post("runs/create", {"experiment_id": experiment_id, **fields})
            return created.json()["run"]["info"]["run_id"]

    return ML()


@pytest.fixture
def ml(client, researcher):
    return mlflow_caller(client, researcher)


@pytest.fixture
def tracking(live_server, researcher, monkeypatch):
    """The `mlflow` module, tracking to the live server with the researcher's token, no retries."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", researcher.raw_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield mlflow
    if mlflow.active_run() is not None:
        mlflow.end_run()
    # Close the client's cached connections while the live server still runs.
    from mlflow.utils.request_utils import _cached_get_request_session

    _cached_get_request_session.cache_clear()
    gc.collect()
