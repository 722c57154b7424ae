"""Shared fixtures. Each app's tests live in a folder mirroring the app; e2e tests start real processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # pytest-django live_server + Playwright

# Real-process fixtures (the embedded and production platforms, the system Chromium), for every test dir.
from tests.platform import browser_type_launch_args, embedded_platform, production_platform  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """The rate limiter's counters (t4dm_site/ratelimit.py) live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Users made in this process hash passwords with a fast hasher (PBKDF2's million rounds cost
    ~0.5 s per user on these cores); stored PBKDF2 hashes still verify. Platforms started as their own
    processes keep the real settings."""
    from django.test.utils import override_settings

    fast = override_settings(
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.MD5PasswordHasher",
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        ]
    )
    fast.enable()
    yield
    fast.disable()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tiny causal LM, built once per test session (deterministic, offline, ~1 s)."""
    from experiments.training.tiny_model import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0))


@pytest.fixture
def artifact_root(settings, tmp_path: Path, tiny_model_dir: Path) -> Path:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TINY_MODEL_DIR = tiny_model_dir
    return settings.ARTIFACT_ROOT


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    from t4dm_site.services import api_token_create, role_assign

    def make(username: str, role: str | None = "researcher"):
        user = get_user_model().objects.create_user(username=username, password="pw-" + username)
        if role:
            role_assign(user=user, role=role)
        _, raw = api_token_create(user=user)
        user.raw_token = raw
        return user

    return make


@pytest.fixture
def researcher(make_user):
    return make_user("rita")


@pytest.fixture
def api(client):
    """Calls /api/v1 with a user's bearer token: api.post(user, "/jobs", {...})."""

    class Api:
        def _headers(self, user):
            return {"Authorization": f"Bearer {user.raw_token}"} if user is not None else {}

        def get(self, user, path: str, **params):
            return client.get(f"/api/v1{path}", params, headers=self._headers(user))

        def post(self, user, path: str, data=None, *, token: str | None = None):
            headers = {"Authorization": f"Bearer {token}"} if token else self._headers(user)
            return client.post(f"/api/v1{path}", data or {}, content_type="application/json", headers=headers)

        def upload(self, user, path: str, *, content: bytes, name: str = "data.jsonl", **fields):
            from django.core.files.uploadedfile import SimpleUploadedFile

            return client.post(
                f"/api/v1{path}",
                {"file": SimpleUploadedFile(name, content), **fields},
                headers=self._headers(user),
            )

    return Api()


DEMO_ROWS = (
    Path(__file__).resolve().parent.parent / "experiments" / "training" / "corpus" / "knowledge_chat.jsonl"
)


@pytest.fixture
def demo_config(researcher, artifact_root):
    """A config for LoRA on the tiny model over the shipped demo dataset, owned by `researcher`."""
    from datasets_app.services import dataset_prepare
    from experiments.services import training_config_create

    version = dataset_prepare(owner=researcher, name="demo", content=DEMO_ROWS.read_bytes(), task_type="chat")
    return training_config_create(
        owner=researcher,
        dataset_id=version.dataset.public_id,
        model_base="t4dm-tiny",
        approach="lora",
        hyperparams={"learning_rate": 3e-3, "epochs": 1},
    )


@pytest.fixture(scope="session", autouse=True)
def _wait_for_function_under_csp():
    """Pages forbid eval (Content-Security-Policy `script-src 'self'`). Playwright polls a plain
    expression given to `page.wait_for_function("...")` through eval, which the page then refuses
    (EvalError); a function expression is polled without eval. Browser tests keep writing plain
    expressions: they are passed on as `() => (expression)`."""
    try:
        from playwright.sync_api import Page
    except ImportError:
        yield
        return
    original = Page.wait_for_function

    import re

    function = re.compile(r"^\s*(?:async\b|function\b|\(?[\w\s,]*\)?\s*=>)")

    def wait_for_function(self, expression: str, *args, **kwargs):
        if not function.match(expression):
            expression = f"() => ({expression})"
        return original(self, expression, *args, **kwargs)

    Page.wait_for_function = wait_for_function
    yield
    Page.wait_for_function = original


@pytest.fixture(autouse=True)
def _no_csp_violations(request):
    """Browser tests: a page that breaks the Content-Security-Policy (an inline script or handler, a
    script from elsewhere, a refused connection) fails the test; Chromium reports each on the console."""
    if "page" not in request.fixturenames:
        yield
        return
    page = request.getfixturevalue("page")
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    yield
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Browser tests last: pytest-playwright's sync API leaves an event loop running in the main
    thread for the rest of the session, which async (Channels, pytest-asyncio) tests cannot share."""
    playwright_fixtures = {"page", "context", "browser"}
    items.sort(key=lambda item: bool(playwright_fixtures & set(getattr(item, "fixturenames", ()))))


def pytest_itemcollected(item):
    """The fast tier (`make test-fast`) leaves out whatever starts processes, servers or a browser."""
    browser = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
    marked = any(item.get_closest_marker(name) for name in SLOW_MARKERS)
    if browser or marked or item.nodeid.startswith(SLOW_TESTS):
        item.add_marker(pytest.mark.slow)


# Markers whose tests start real processes, servers or Chromium: all of them are `slow`.
SLOW_MARKERS = ("e2e", "browser", "production", "faults")
SLOW_FIXTURES = {"page", "context", "browser", "live_server", "embedded_platform", "production_platform"}
# Tests that spawn subprocesses (import checks, whole-API fuzzing, settings in a fresh interpreter, worker
# processes) without one of the markers above: a module, or a module::test prefix.
SLOW_TESTS = (
    "tests/security/test_schemathesis.py",
    "tests/security/test_file_permissions.py",
    "tests/security/test_production_settings.py::test_check_deploy",
    "tests/security/test_production_settings.py::test_plain_http",
    "tests/experiments/test_fencing.py",
    "tests/sdk/test_sdk_imports.py::test_the_sdk_does_not_import_django",
    "tests/t4dm_site/test_settings.py::test_embedded",
    "tests/t4dm_site/test_settings.py::test_production",
    "tests/t4dm_site/test_settings.py::test_a_bad_database_url",
    "tests/integrations/test_finetune_config.py::test_a_bad_file_stops",
    "tests/integrations/test_finetune_config.py::test_the_env_var_file",
    "tests/models_registry/test_stages.py::test_two_promotions",
    "tests/training/test_fsdp.py::test_a_sharded",
    "tests/training/test_fsdp.py::test_a_resume",
    "tests/training/test_fsdp.py::test_a_cancel",
    "tests/training/test_fsdp.py::test_two_sharded",
)
