"""Issue 17 item 12: unhandled input must not become a 500 with a traceback.

- An error no handler expected answers each API's own JSON error shape with status 500 and no
  traceback, with DEBUG on (the embedded default) as with it off; the traceback goes to the log.
- `/static/%2e%2e/...` (a path out of the static folders) is a 404, not a 500."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

SECRET = "db password is hunter2"


def _boom(*args, **kwargs):
    raise RuntimeError(SECRET)


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    "api, target, path",
    [
        ("native", "experiments.selectors.workers_overview", "/api/v1/workers"),
        ("openai", "experiments.openai_compat.services.jobs_visible_to", "/v1/fine_tuning/jobs"),
        (
            "mlflow",
            "experiments.mlflow_compat.services.experiments_search",
            "/api/2.0/mlflow/experiments/search",
        ),
    ],
)
def test_an_unexpected_error_is_a_json_500_without_traceback(
    researcher, settings, monkeypatch, caplog, debug, api, target, path
):
    # given an unexpected failure behind an endpoint (a fault injected where a bug would be)
    settings.DEBUG = debug
    module, _, name = target.rpartition(".")
    monkeypatch.setattr(module + "." + name, _boom)
    client = Client(raise_request_exception=False)

    # when
    response = client.get(path, headers={"Authorization": f"Bearer {researcher.raw_token}"})

    # then: the API's JSON error shape, 500, and nothing of the exception
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    text = json.dumps(body)
    assert "Traceback" not in text and SECRET not in text and "RuntimeError" not in text
    if api == "native":
        assert body["error"]["code"] == "internal_error" and body["error"]["message"]
    elif api == "openai":
        assert body["error"]["type"] == "api_error" and body["error"]["message"]
    else:
        assert body["error_code"] == "INTERNAL_ERROR" and body["message"]
    # and the traceback went to the server log
    assert any(
        SECRET in (r.exc_text or "") or (r.exc_info and SECRET in str(r.exc_info[1])) for r in caplog.records
    )


async def _asgi_get(path: str) -> tuple[int, bytes]:
    """One GET through the ASGI application the platform serves (static files included)."""
    from t4dm_site.asgi import application

    messages: list[dict] = []
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "headers": [(b"host", b"localhost")],
        "server": ("localhost", 80), "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    await asyncio.wait_for(application(scope, receive, send), timeout=60)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    "path",
    ["/static/../t4dm_site/settings.py", "/static/../../../../etc/passwd", "/static/css/../../manage.py",
     "/static/vendor/../../../pyproject.toml"],
)  # fmt: skip
@pytest.mark.parametrize("debug", [True, False])
def test_a_static_path_out_of_the_static_folders_is_404(db, settings, path, debug):
    """daphne hands the app the decoded path: `/static/%2e%2e/x` arrives as `/static/../x`."""
    settings.DEBUG = debug
    status, body = async_to_sync(_asgi_get)(path)
    assert status == 404, body[:300]
    assert b"SECRET_KEY" not in body and b"root:" not in body and b"[project]" not in body


def test_a_real_static_file_is_still_served(db):
    status, body = async_to_sync(_asgi_get)("/static/css/app.css")
    assert status == 200 and b"{" in body
