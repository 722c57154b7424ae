from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from t4dm_site.env import env_bool, env_int, env_url


def test_env_bool_rejects_garbage(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG", False)


def test_env_int_rejects_non_numbers_and_too_small(monkeypatch):
    monkeypatch.setenv("X_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="integer"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match=">= 1"):
        env_int("X_INT", 1, minimum=1)


def test_env_url_checks_the_scheme(monkeypatch):
    monkeypatch.setenv("X_URL", "mysql://x")
    with pytest.raises(ImproperlyConfigured, match="postgres"):
        env_url("X_URL", schemes=("sqlite", "postgres"))
    monkeypatch.delenv("X_URL")
    assert env_url("X_URL", schemes=("sqlite",), default="sqlite:///a") == "sqlite:///a"


def _settings_in_subprocess(tmp_path, **env) -> subprocess.CompletedProcess:
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'], 'broker': settings.CELERY_BROKER_URL, "
        "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'debug': settings.DEBUG}))"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("T4DM_", "DJANGO_", "DATABASE_URL", "CELERY_", "CHANNEL_"))
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "t4dm_site.settings", "T4DM_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_defaults_need_no_variables_and_keep_a_generated_secret(tmp_path):
    result = _settings_in_subprocess(tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"db": "django.db.backends.sqlite3"' in result.stdout
    assert '"broker": "filesystem://"' in result.stdout
    assert "InMemoryChannelLayer" in result.stdout
    # Issue 17 item 12: no debug pages (tracebacks, settings) on the embedded default either.
    assert '"debug": false' in result.stdout
    first = (tmp_path / "secret_key").read_text()
    assert len(first) > 40
    _settings_in_subprocess(tmp_path)
    assert (tmp_path / "secret_key").read_text() == first


def test_production_requires_a_secret_key(tmp_path):
    result = _settings_in_subprocess(tmp_path, T4DM_PRODUCTION="1")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_production_urls_select_postgres_redis(tmp_path):
    result = _settings_in_subprocess(
        tmp_path,
        T4DM_PRODUCTION="1",
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u@127.0.0.1:5432/db",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        CHANNEL_LAYER_URL="redis://127.0.0.1:6379/1",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "postgresql" in result.stdout and "redis://" in result.stdout and "RedisChannelLayer" in result.stdout
    )
    assert '"debug": false' in result.stdout


def test_a_bad_database_url_is_refused(tmp_path):
    result = _settings_in_subprocess(tmp_path, DATABASE_URL="oracle://x")
    assert result.returncode != 0 and "DATABASE_URL" in result.stderr
