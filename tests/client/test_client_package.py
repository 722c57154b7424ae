"""The client package on its own: `pip install ./client` in a fresh venv (no Django, no torch), then its
CLI and SDK against the live embedded platform, as a user on another machine would run them."""

from __future__ import annotations

import json
import stat
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.client.conftest import ClientVenv, client_env
from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.e2e


def _run(venv: ClientVenv, env: dict, *args: str, stdin: str | None = None, timeout: float = 300):
    return subprocess.run(
        [venv.t4dm, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture
def logged_in(client_venv, embedded_platform, tmp_path) -> dict:
    """The environment of a user who ran `t4dm login` (URL and token from the config file only)."""
    env = client_env(tmp_path)
    _ok(_run(client_venv, env, "login", "--url", embedded_platform.base_url, "--token", "-",
             stdin=embedded_platform.token + "\n"))  # fmt: skip
    return env


def test_the_client_venv_has_neither_django_nor_torch(client_venv):
    for module in ("django", "torch", "transformers"):
        result = subprocess.run(
            [client_venv.python, "-c", f"import {module}"], capture_output=True, text=True
        )
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, module
    done = subprocess.run(
        [
            client_venv.python,
            "-c",
            "import t4dm, httpx; from t4dm import T4DM, T4DMError; print(t4dm.__file__)",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert str(client_venv.path) in done.stdout  # the installed copy, not the repository's


def test_login_checks_the_token_and_stores_it_for_the_owner_only(client_venv, embedded_platform, tmp_path):
    env = client_env(tmp_path)
    config = Path(env["XDG_CONFIG_HOME"]) / "t4dm" / "config.json"

    refused = _run(client_venv, env, "login", "--url", embedded_platform.base_url, "--token", "t4dm_wrong")
    assert refused.returncode == 1 and "401" in refused.stderr and not config.exists()

    _ok(_run(client_venv, env, "login", "--url", embedded_platform.base_url, "--token", "-",
             stdin=embedded_platform.token + "\n"))  # fmt: skip
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {
        "server_url": embedded_platform.base_url,
        "token": embedded_platform.token,
    }
    assert _run(client_venv, env, "jobs", "list").returncode == 0


def test_up_says_the_platform_is_not_installed_here(client_venv, tmp_path):
    result = _run(client_venv, client_env(tmp_path), "up")
    assert result.returncode == 1 and "not installed" in result.stderr and "t4dm login" in result.stderr


def test_datasets_train_follow_jobs_eval_and_models(client_venv, logged_in, tmp_path):
    env = logged_in
    # datasets
    dataset = json.loads(
        _ok(_run(client_venv, env, "datasets", "upload", str(DEMO_ROWS), "--name", "cli-demo"))
    )
    dataset_id = dataset["dataset_id"]
    assert dataset_id.startswith("ds-") and dataset["task_type"] == "chat"
    listed = json.loads(_ok(_run(client_venv, env, "--json", "datasets", "list")))
    assert dataset_id in [d["dataset_id"] for d in listed]
    assert dataset_id in _ok(_run(client_venv, env, "datasets", "list"))  # the table
    assert json.loads(_ok(_run(client_venv, env, "datasets", "show", dataset_id)))["dataset_id"] == dataset_id

    # train from a spec file, following its log until it ends
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"dataset: {dataset_id}\n"
        "model_base: t4dm-tiny\n"
        "approach: lora\n"
        "hyperparams: {learning_rate: 3.0e-3, epochs: 1, batch_size: 8, gradient_accumulation: 1}\n"
        "checkpointing: {save_steps: 2}\n"
    )
    trained = _run(client_venv, env, "train", str(spec), "--follow", timeout=400)
    job = json.loads(_ok(trained))
    job_id = job["job_id"]
    assert job["status"] == "succeeded", trained.stderr
    assert f"job {job_id}" in trained.stderr
    assert "succeeded" in trained.stderr.lower()  # a log line printed while following

    # jobs
    assert job_id in _ok(_run(client_venv, env, "jobs", "list"))
    assert json.loads(_ok(_run(client_venv, env, "jobs", "show", job_id)))["status"] == "succeeded"
    logs = _ok(_run(client_venv, env, "jobs", "logs", job_id))
    assert logs.strip() and len(logs.splitlines()) >= 2
    resumed = json.loads(_ok(_run(client_venv, env, "jobs", "resume", job_id)))
    assert resumed["job_id"] != job_id and resumed["status"] in {"validating", "queued", "running"}
    cancelled = json.loads(_ok(_run(client_venv, env, "jobs", "cancel", resumed["job_id"])))
    assert cancelled["cancel_requested"] or cancelled["status"] == "cancelled"
    missing = _run(client_venv, env, "jobs", "show", "job-99999")
    assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr

    # eval
    evaluation = json.loads(
        _ok(
            _run(
                client_venv,
                env,
                "eval",
                job_id,
                dataset_id,
                "--metrics",
                "perplexity",
                "--max-samples",
                "4",
                "--wait",
                timeout=400,
            )
        )  # fmt: skip
    )
    assert evaluation["status"] == "succeeded" and "perplexity" in evaluation["metrics"], evaluation

    # models: the succeeded job became a version; stage it, export it and download the archive
    models = json.loads(_ok(_run(client_venv, env, "--json", "models", "list")))
    assert models, "the succeeded job should have been registered as a model version"
    model_id = next(m["model_id"] for m in models if m["base_model"] == "t4dm-tiny")
    versions = json.loads(_ok(_run(client_venv, env, "--json", "models", "list", model_id)))
    version = next(v for v in versions if v["job_id"] == job_id)["version"]
    staged = json.loads(
        _ok(_run(client_venv, env, "models", "promote", model_id, str(version), "--stage", "staging"))
    )
    assert staged["stage"] == "staging"
    exported = json.loads(
        _ok(
            _run(
                client_venv,
                env,
                "models",
                "export",
                model_id,
                str(version),
                "--no-merge",
                "--download",
                str(tmp_path),
            )
        )  # fmt: skip
    )
    archive = Path(exported["downloaded_to"])
    assert archive.parent == tmp_path and tarfile.is_tarfile(archive)


def test_the_sdk_runs_in_the_client_venv(client_venv, embedded_platform, tmp_path):
    script = tmp_path / "use_sdk.py"
    script.write_text(
        "import json, sys\n"
        "from t4dm import T4DM, T4DMError\n"
        "with T4DM() as t4dm:\n"  # T4DM_SERVER_URL / T4DM_API_TOKEN from the environment
        "    ds = t4dm.prepare_dataset(sys.argv[1], task_type='chat')\n"
        "    cfg = t4dm.configure_training('t4dm-tiny', ds['dataset_id'], hyperparams={'epochs': 1})\n"
        "    try:\n"
        "        t4dm.monitor_training('job-99999')\n"
        "    except T4DMError as e:\n"
        "        missing = [e.status, e.code]\n"
        "    print(json.dumps({'dataset': ds['dataset_id'], 'config': cfg['config_id'], 'missing': missing,\n"
        "                      'jobs': len(t4dm.list_jobs())}))\n"
    )
    env = client_env(
        tmp_path, T4DM_SERVER_URL=embedded_platform.base_url, T4DM_API_TOKEN=embedded_platform.token
    )
    done = subprocess.run([client_venv.python, str(script), str(DEMO_ROWS)], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["dataset"].startswith("ds-") and result["config"].startswith("cfg-")
    assert result["missing"] == [404, "not_found"]


class _Flaky(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 1) and then 503 before the real answer; records when each came."""

    seen: list[float] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Flaky.seen.append(time.monotonic())
        if len(_Flaky.seen) == 1:
            self._answer(
                429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "1"}
            )
        elif len(_Flaky.seen) == 2:
            self._answer(503, {"error": {"code": "unavailable", "message": "restarting"}})
        else:
            self._answer(200, {"job_id": "job-001", "status": "running"})

    def _answer(self, status: int, body: dict, headers: dict | None = None):
        raw = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


def test_the_sdk_retries_429_and_503_and_waits_what_retry_after_says(client_venv, tmp_path):
    _Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = (
            "import sys; from t4dm import T4DM\n"
            "print(T4DM(sys.argv[1], token='t', backoff=0.05).monitor_training('job-001')['status'])\n"
        )
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = subprocess.run(
            [client_venv.python, "-c", code, url], capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
    assert done.returncode == 0 and done.stdout.strip() == "running", done.stderr
    assert len(_Flaky.seen) == 3
    assert _Flaky.seen[1] - _Flaky.seen[0] >= 0.95  # Retry-After: 1 was honoured
