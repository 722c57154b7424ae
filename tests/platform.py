"""Real processes for end-to-end tests (fixtures registered in tests/conftest.py): `manage.py t4dm_up` (daphne + a Celery worker) on the embedded
default, and the production layout (PostgreSQL, Redis broker and channel layer, web and worker
started separately) against the machine's real servers."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("T4DM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("T4DM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
ADMIN_PASSWORD = "e2e-admin-password"


CHROMIUM = "/usr/bin/chromium"


def skip_or_fail(message: str) -> None:
    """Service-backed tests skip where the service is absent, but CI (T4DM_REQUIRE_SERVICES=1) must run them."""
    if os.environ.get("T4DM_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (T4DM_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Platform:
    base_url: str
    env: dict[str, str]
    token: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)
    base_urls: list[str] = field(default_factory=list)  # one per ASGI process (production_web)
    database: str = ""  # the throwaway PostgreSQL database (production_web)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://")

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def spawn(self, *args: str, log: Path) -> None:
        handle = open(log, "w")  # noqa: SIM115 - closed when the process is reaped
        self.processes.append(
            subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def wait_until_up(self, timeout: float = 90, url: str | None = None) -> None:
        url = url or self.base_url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(
                    "a platform process exited during start-up; see its log in the test's tmp dir"
                )
            try:
                if httpx.get(url + "/login/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the ASGI server did not come up")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _clean_env() -> dict[str, str]:
    prefixes = ("T4DM_", "DJANGO_", "DATABASE_URL", "CELERY_", "CHANNEL_LAYER_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes) or k == "T4DM_REQUIRE_SERVICES"}


def _boot(platform: Platform) -> Platform:
    platform.manage("migrate", "--noinput", "-v", "0")
    platform.manage("t4dm_bootstrap", "--password", ADMIN_PASSWORD)
    platform.token = platform.manage("create_api_token", "admin").strip()
    return platform


@pytest.fixture(scope="session")
def embedded_platform(tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("embedded")
    port = free_port()
    env = {
        **_clean_env(),
        "T4DM_DATA_DIR": str(data),
        "T4DM_TINY_MODEL_DIR": str(tiny_model_dir),
        # Each succeeded job would queue a base comparison on the one worker; tests that want one ask.
        "T4DM_COMPARE_TO_BASE": "0",
        "T4DM_SERVER_URL": f"http://127.0.0.1:{port}",
    }
    platform = _boot(Platform(base_url=f"http://127.0.0.1:{port}", env=env))
    # Exactly what `make run` starts: the ASGI server and one worker, under one process.
    platform.spawn(sys.executable, "manage.py", "t4dm_up", "--port", str(port), log=data / "t4dm_up.log")
    try:
        platform.wait_until_up()
        yield platform
    finally:
        platform.stop()


def _postgres_database() -> str:
    import psycopg

    name = f"t4dm_e2e_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    return name


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_ready() -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL + "/14", socket_connect_timeout=3)
        client.flushdb()
        redis.Redis.from_url(REDIS_URL + "/15").flushdb()
    except redis.exceptions.ConnectionError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {exc}")


def production_web(
    data: Path, *, asgi_processes: int = 2, tiny_model_dir: Path | None = None, server: str = "daphne"
) -> Platform:
    """The production web tier without a worker, for load tests and benchmarks: a fresh PostgreSQL
    database, Redis as the channel layer, and `asgi_processes` ASGI processes (`server`: daphne, or
    uvicorn as `make web` runs it) on their own ports behind it (`platform.base_urls`; `base_url` is
    the first). `stop_production_web` ends it.
    Redis databases 12 and 13, so that it never flushes those of a production_platform running beside it."""
    import redis

    from t4dm_site.management.commands.t4dm_up import web_command

    try:
        for db in (12, 13):
            redis.Redis.from_url(f"{REDIS_URL}/{db}", socket_connect_timeout=3).flushdb()
    except redis.exceptions.ConnectionError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    database = _postgres_database()
    ports = [free_port() for _ in range(asgi_processes)]
    env = {
        **_clean_env(),
        "T4DM_PRODUCTION": "1",
        "T4DM_HTTPS": "0",  # plain http on localhost (production over https: tests/security)
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": PG_URL.rsplit("/", 1)[0] + "/" + database,
        "CELERY_BROKER_URL": REDIS_URL + "/12",
        "CHANNEL_LAYER_URL": REDIS_URL + "/13",
        "T4DM_DATA_DIR": str(data),
        "T4DM_COMPARE_TO_BASE": "0",
        "T4DM_SERVER_URL": f"http://127.0.0.1:{ports[0]}",
    }
    if tiny_model_dir is not None:
        env["T4DM_TINY_MODEL_DIR"] = str(tiny_model_dir)
    platform = Platform(base_url=f"http://127.0.0.1:{ports[0]}", env=env)
    platform.database = database
    platform.base_urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        _boot(platform)
        for index, port in enumerate(ports):
            platform.spawn(
                *web_command(server, "127.0.0.1", str(port), data / f"access{index}.log"),
                log=data / f"web{index}.log",
            )
        for url in platform.base_urls:
            platform.wait_until_up(url=url)
    except BaseException:
        stop_production_web(platform)
        raise
    return platform


def add_uvicorn(platform: Platform, data: Path) -> None:
    """A uvicorn process, as `make web` runs it, beside production_web's daphne on the same database and
    Redis: `platform.uvicorn_url`, its access log `platform.access_log`."""
    from t4dm_site.management.commands.t4dm_up import web_command

    port = str(free_port())
    platform.access_log = data / "uvicorn-access.log"
    platform.spawn(*web_command("uvicorn", "127.0.0.1", port, platform.access_log), log=data / "uvicorn.log")
    platform.uvicorn_url = f"http://127.0.0.1:{port}"
    platform.wait_until_up(url=platform.uvicorn_url)


@contextlib.contextmanager
def served_by(platform: Platform, server: str):
    """`platform.base_url` set to its daphne (`server="daphne"`) or its add_uvicorn process for the block."""
    daphne_url = platform.base_urls[0]
    platform.base_url = daphne_url if server == "daphne" else platform.uvicorn_url
    try:
        yield platform
    finally:
        platform.base_url = daphne_url


def stop_production_web(platform: Platform) -> None:
    platform.stop()
    _drop_postgres_database(platform.database)


# Makes `count` running jobs owned by the admin, as a worker would have them: (public id, job token).
_FAKE_JOBS = """
import json
from django.contrib.auth import get_user_model
from datasets_app.models import Dataset, DatasetVersion
from experiments.models import Experiment, TrainingConfig, TrainingJob
admin = get_user_model().objects.get(username="admin")
dataset = Dataset.objects.create(name="load", owner=admin, task_type="chat")
version = DatasetVersion.objects.create(dataset=dataset, number=1, content_hash="load", format="jsonl",
    task_type="chat", path="/nonexistent", validation_status="passed")
experiment = Experiment.objects.create(name="load", owner=admin)
config = TrainingConfig.objects.create(owner=admin, experiment=experiment, dataset_version=version,
    model_base="t4dm-tiny", task_type="chat")
jobs = []
for _ in range(COUNT):
    job = TrainingJob.objects.create(owner=admin, config=config, experiment=experiment)
    token = job.issue_token()
    job.mark_queued()
    job.mark_running(worker="load")
    jobs.append([job.public_id, token])
print(json.dumps(jobs))
"""


def running_jobs(platform: Platform, count: int) -> list[tuple[str, str]]:
    """`count` running jobs (no worker trains them): their public ids and job tokens, for a load
    generator that reports like a worker."""
    out = platform.manage("shell", "-c", _FAKE_JOBS.replace("COUNT", str(int(count))))
    return [tuple(job) for job in json.loads(out.strip().splitlines()[-1])]


def _spawn_worker(platform: Platform, queues: str, name: str, log: Path) -> None:
    platform.spawn(
        sys.executable, "-m", "celery", "-A", "t4dm_site", "worker", "-Q", queues, "-P", "solo",
        "-n", name, "--without-gossip", "--without-mingle", log=log,
    )  # fmt: skip


@pytest.fixture(scope="session")
def production_platform(tmp_path_factory, tiny_model_dir):
    _redis_ready()
    database = _postgres_database()
    data = tmp_path_factory.mktemp("production")
    port = free_port()
    env = {
        **_clean_env(),
        "T4DM_PRODUCTION": "1",
        "T4DM_HTTPS": "0",  # plain http on localhost (production over https: tests/security)
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": PG_URL.rsplit("/", 1)[0] + "/" + database,
        "CELERY_BROKER_URL": REDIS_URL + "/14",
        "CHANNEL_LAYER_URL": REDIS_URL + "/15",
        "T4DM_DATA_DIR": str(data),
        "T4DM_TINY_MODEL_DIR": str(tiny_model_dir),
        # Each succeeded job would queue a base comparison on the one worker; tests that want one ask.
        "T4DM_COMPARE_TO_BASE": "0",
        "T4DM_SERVER_URL": f"http://127.0.0.1:{port}",
    }
    platform = _boot(Platform(base_url=f"http://127.0.0.1:{port}", env=env))
    # Production layout: the web process without a worker, and separately started workers: the GPU one...
    platform.spawn(
        sys.executable, "manage.py", "t4dm_up", "--no-worker", "--port", str(port), log=data / "web.log"
    )
    _spawn_worker(platform, "training", "e2e-gpu0@%h", data / "worker.log")
    # ... and the platform worker (`make platform-worker`): dataset work, workflow steps, webhooks.
    _spawn_worker(platform, "datasets,eval", "e2e-platform@%h", data / "platform-worker.log")
    try:
        platform.wait_until_up()
        yield platform
    finally:
        platform.stop()
        _drop_postgres_database(database)


def browser_log_in(page, base: str, username: str = "rita", password: str | None = None) -> None:
    """Log in through the login page (the test users' password is "pw-<username>" unless given)."""
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password or f"pw-{username}")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")


@pytest.fixture(scope="session")
def browser_type_launch_args():
    """pytest-playwright drives the system Chromium (Playwright cannot download its own browser here)."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"no system Chromium at {CHROMIUM} (apt-get install chromium)")
    return {
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }
