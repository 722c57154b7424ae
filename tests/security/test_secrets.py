"""Item 12: secrets never appear in logs, API responses or page HTML: users' API tokens (shown once, at
creation), worker tokens, the worker secret, the OpenAI key, webhook signing secrets, SECRET_KEY.

The test walks every GET operation of the three APIs and every page (admin pages included) as the
owner and as an admin, with logging at DEBUG captured, and searches all of it for the secret strings."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model

from tests.security.test_access_matrix import OPERATIONS, _path
from tests.security.test_page_matrix import PAGE_POLICY, _url, pages

OPENAI_KEY = "sk-t4dm-test-" + "Q7x9" * 10
WEBHOOK_SECRET = "whsec-t4dm-test-" + "Zp4L" * 8


@pytest.fixture
def secrets_world(world, people, settings, client):
    settings.OPENAI_API_KEY = OPENAI_KEY
    admin = {"Authorization": f"Bearer {people['admin'].raw_token}"}
    created = client.post(
        "/api/v1/webhooks",
        {"url": "https://hooks.example.org/t4dm", "event_types": ["*"], "secret": WEBHOOK_SECRET},
        content_type="application/json",
        headers=admin,
    )
    assert created.status_code == 201, created.content
    # Shown once, in the answer to the request that set it: that is the one place it may appear.
    assert WEBHOOK_SECRET in created.content.decode()
    generated = client.post(
        "/api/v1/webhooks", {"url": "https://hooks.example.org/two", "event_types": ["*"]},
        content_type="application/json", headers=admin,
    )  # fmt: skip
    superuser = get_user_model().objects.create_superuser("root", password="pw-root")
    return {
        **world,
        "superuser": superuser,
        "secrets": {
            "owner API token": people["owner"].raw_token,
            "admin API token": people["admin"].raw_token,
            "worker token": world["job_token"],
            "other worker token": world["other_job_token"],
            "worker secret": settings.WORKER_SECRET,
            "OpenAI key": OPENAI_KEY,
            "webhook secret": WEBHOOK_SECRET,
            "generated webhook secret": generated.json()["secret"],
            "SECRET_KEY": settings.SECRET_KEY,
        },
    }


def _leaks(text: str, secrets: dict) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


def test_no_secret_in_any_api_response_page_or_log(
    client, people, secrets_world, caplog, django_capture_on_commit_callbacks
):
    secrets = secrets_world["secrets"]
    found = []
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=False):
        for who in ("owner", "admin"):
            headers = {"Authorization": f"Bearer {people[who].raw_token}"}
            for method, path in OPERATIONS:
                if method != "GET" or "/worker/" in path:
                    continue
                response = client.get(_path(path, secrets_world), headers=headers)
                body = b"".join(response.streaming_content) if response.streaming else response.content
                found += [
                    f"{who} GET {path}: {leak}" for leak in _leaks(body.decode("utf-8", "replace"), secrets)
                ]
            client.force_login(people[who] if who == "owner" else secrets_world["superuser"])
            for route, name in pages():
                if PAGE_POLICY.get(name, ("GET",))[0] != "GET":
                    continue
                response = client.get(_url(route, secrets_world))
                if not response.streaming:
                    found += [
                        f"{who} page {route}: {leak}" for leak in _leaks(response.content.decode(), secrets)
                    ]
            client.logout()
        # Admin pages: the token, job, webhook and worker records, their lists and change forms.
        client.force_login(secrets_world["superuser"])
        admin_pages = ["/admin/"]
        for model in ("t4dm_site/apitoken", "experiments/trainingjob", "integrations/webhooksubscription"):
            admin_pages.append(f"/admin/{model}/")
            admin_pages.append(f"/admin/{model}/1/change/")
        for url in admin_pages:
            response = client.get(url)
            assert response.status_code in (200, 302, 404), url
            found += [f"admin {url}: {leak}" for leak in _leaks(response.content.decode(), secrets)]
        # A failing OpenAI call (nothing listens at the configured URL) reports an error, not the key.
        failed = client.post(
            "/api/v1/finetune/openai",
            {"training_file": secrets_world["dataset_id"], "model": "gpt-4o-mini-2024-07-18"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {people['owner'].raw_token}"},
        )
        found += [f"finetune_openai error: {leak}" for leak in _leaks(failed.content.decode(), secrets)]
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    found += [f"logs: {leak}" for leak in _leaks(logs, secrets)]
    assert not found, "\n".join(found)


def test_an_api_token_is_shown_once_and_stored_only_as_a_hash(people):
    from t4dm_site.models import ApiToken, hash_token

    raw = people["owner"].raw_token
    stored = ApiToken.objects.get(user=people["owner"], name="default")
    assert stored.token_hash == hash_token(raw) and raw not in str(stored.__dict__)
    assert stored.prefix == raw[:12] and len(stored.prefix) < len(raw) // 3
