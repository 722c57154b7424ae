"""Item 11: production mode's transport settings. `manage.py check --deploy` is clean with the required
environment; the embedded default still works over plain http on localhost."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `check --deploy` fails on any warning (SystemCheckError, exit 1).
CHECK_DEPLOY = (
    "from django.core.management import call_command; "
    "call_command('check', deploy=True, fail_level='WARNING'); "
)
PRINT = (
    "from django.conf import settings as s; import json; print(json.dumps({k: getattr(s, k) for k in ("
    "'DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
    "'SESSION_COOKIE_HTTPONLY', 'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS', 'SECURE_PROXY_SSL_HEADER')}))"
)


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("T4DM_", "DJANGO_", "DATABASE_URL"))}
    clean |= {"T4DM_DATA_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "T4DM_PRODUCTION": "1",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "DATABASE_URL": "postgres://t4dm@db.invalid/t4dm",
    "CELERY_BROKER_URL": "redis://redis.invalid:6379/0",
    "CHANNEL_LAYER_URL": "redis://redis.invalid:6379/1",
    "T4DM_ALLOWED_HOSTS": "t4dm.example.org",
}


def test_check_deploy_is_clean_and_cookies_are_secure_in_production_mode(tmp_path):
    result = _manage(tmp_path, "shell", "-c", CHECK_DEPLOY + PRINT, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert (
        values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SESSION_COOKIE_HTTPONLY"]
    )
    assert values["SECURE_SSL_REDIRECT"] and values["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] and values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_plain_http_production_is_an_explicit_choice(tmp_path):
    result = _manage(tmp_path, "shell", "-c", PRINT, **PRODUCTION, T4DM_HTTPS="0")
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert not values["SESSION_COOKIE_SECURE"] and not values["SECURE_SSL_REDIRECT"]
    assert values["SECURE_HSTS_SECONDS"] == 0


def test_the_embedded_default_serves_plain_http(client, people, settings):
    assert not settings.SESSION_COOKIE_SECURE and not settings.SECURE_SSL_REDIRECT
    response = client.post("/login/", {"username": "olga", "password": "pw-olga"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert not response.cookies["sessionid"]["secure"]
    page = client.get("/")
    assert page.status_code == 200
    assert page["X-Frame-Options"] == "DENY" and page["X-Content-Type-Options"] == "nosniff"


def test_https_redirect_and_hsts_in_production(client, people, settings):
    """What a browser sees from production settings: http → https, HSTS on https, secure cookies."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    redirect = client.get("/login/")
    assert redirect.status_code == 301 and redirect["Location"].startswith("https://")
    page = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert page.status_code == 200 and "max-age=31536000" in page["Strict-Transport-Security"]
    login = client.post(
        "/login/", {"username": "olga", "password": "pw-olga"}, headers={"X-Forwarded-Proto": "https"}
    )
    assert login.status_code == 302 and login.cookies["sessionid"]["secure"]
    # A worker reporting over the internal network by plain http is not redirected (a POST would break).
    worker = client.post("/api/v1/worker/heartbeat", {}, content_type="application/json")
    assert worker.status_code == 401
