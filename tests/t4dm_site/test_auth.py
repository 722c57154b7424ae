from __future__ import annotations

from django.core.management import call_command

from t4dm_site.models import ApiToken, hash_token


def test_api_without_a_token_is_401(api, db):
    response = api.get(None, "/jobs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_wrong_or_revoked_token_is_401(api, researcher):
    assert api.get(None, "/jobs").status_code == 401
    assert api.post(None, "/experiments", {"name": "x"}, token="t4dm_wrong").status_code == 401
    assert api.get(researcher, "/jobs").status_code == 200
    researcher.api_tokens.get().revoke()
    assert api.get(researcher, "/jobs").status_code == 401


def test_tokens_are_stored_hashed(researcher):
    token = researcher.api_tokens.get()
    assert researcher.raw_token not in (token.token_hash, token.prefix)
    assert token.token_hash == hash_token(researcher.raw_token)


def test_an_evaluator_cannot_use_the_training_api(api, make_user):
    evaluator = make_user("eve", role="evaluator")
    response = api.get(evaluator, "/jobs")
    assert response.status_code == 403
    assert "researcher" in response.json()["error"]["message"]
    assert api.post(evaluator, "/experiments", {"name": "x"}).status_code == 403


def test_a_researcher_cannot_see_another_researchers_job_but_an_admin_can(
    api, demo_config, make_user, django_capture_on_commit_callbacks
):
    owner = demo_config.owner
    other = make_user("oscar")
    boss = make_user("ada", role="admin")
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(owner, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    assert api.get(other, f"/jobs/{job_id}").status_code == 404
    assert api.get(other, "/jobs").json() == []
    assert api.post(other, f"/jobs/{job_id}/cancel").status_code == 404
    assert api.get(boss, f"/jobs/{job_id}").status_code == 200


def test_management_command_creates_a_working_token(api, db, capsys):
    call_command("create_api_token", "newbie", "--create-user", "--role", "researcher")
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("t4dm_")
    assert ApiToken.objects.get(user__username="newbie").token_hash == hash_token(raw)
    response = api.post(None, "/experiments", {"name": "from the cli"}, token=raw)
    assert response.status_code == 201


def test_session_login_needs_csrf_for_writes(client, researcher):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(researcher)
    assert strict.get("/api/v1/jobs").status_code == 200
    refused = strict.post("/api/v1/experiments", {"name": "x"}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    strict.get("/login/")  # sets the csrftoken cookie
    csrf = strict.cookies["csrftoken"].value
    ok = strict.post(
        "/api/v1/experiments", {"name": "x"}, content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert ok.status_code == 201


def test_bootstrap_creates_roles_and_one_admin(db, capsys):
    call_command("t4dm_bootstrap", "--password", "secret-pass-1")
    assert "Created the first admin account" in capsys.readouterr().out
    call_command("t4dm_bootstrap")
    assert "already exists" in capsys.readouterr().out


def test_the_openapi_docs_are_served(client, db):
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/jobs" in schema["paths"] and "/api/v1/ingest/jobs/{job_id}/metrics" in schema["paths"]
