"""Stages: allowed moves, recorded history, one production version per model_id (also under races)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import IntegrityError

from models_registry.models import ModelVersion, Stage, StageTransition
from models_registry.selectors import stage_history
from models_registry.services import model_version_transition
from t4dm_site.errors import Conflict, Forbidden, InvalidInput
from tests.platform import PG_URL, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin_user(make_user):
    return make_user("ada", role="admin")


def _registered(model_id: str = "t4dm-x"):
    from models_registry.models import RegisteredModel

    return RegisteredModel.objects.get_or_create(owner=None, model_id=model_id)[0]


def _version(model_id: str = "t4dm-x", version: str = "1.0.0", **fields) -> ModelVersion:
    return ModelVersion.objects.create(
        registered=_registered(model_id), model_id=model_id, version=version, base_model="tiny", **fields
    )


def _staging(model_id: str = "t4dm-x", version: str = "1.0.0") -> ModelVersion:
    return _version(model_id, version, stage=Stage.STAGING)


@pytest.mark.django_db
def test_every_transition_is_recorded_with_who_when_from_to_why(researcher):
    version = _version()
    model_version_transition(
        version=version, to_stage="staging", actor=researcher, reason="try it on the team"
    )
    model_version_transition(version=version, to_stage="archived", actor=researcher, reason="superseded")
    history = stage_history(version)
    assert [(h["from_stage"], h["to_stage"], h["who"], h["why"]) for h in history] == [
        ("none", "staging", "rita", "try it on the team"),
        ("staging", "archived", "rita", "superseded"),
    ]
    assert all(h["when"] for h in history)
    version.refresh_from_db()
    assert version.stage == "archived"


@pytest.mark.django_db
def test_production_only_from_staging(researcher):
    version = _version()
    with pytest.raises(Conflict, match="cannot move from none to production"):
        model_version_transition(version=version, to_stage="production", actor=researcher)
    with pytest.raises(InvalidInput, match="unknown stage"):
        model_version_transition(version=version, to_stage="live", actor=researcher)


@pytest.mark.django_db
def test_promoting_archives_the_previous_production_version(admin_user):
    old, new = _staging(version="1.0.0"), _staging(version="1.1.0")
    model_version_transition(version=old, to_stage="production", actor=admin_user, reason="go", override=True)
    model_version_transition(version=new, to_stage="production", actor=admin_user, reason="go", override=True)
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {"1.0.0": "archived", "1.1.0": "production"}
    replaced = StageTransition.objects.get(version=old, to_stage="archived")
    assert replaced.reason == "replaced in production by 1.1.0"


@pytest.mark.django_db
def test_the_database_refuses_a_second_production_version():
    _version(stage=Stage.PRODUCTION)
    with pytest.raises(IntegrityError):
        _version(version="1.1.0", stage=Stage.PRODUCTION)


@pytest.mark.django_db
def test_override_is_for_admins_only(researcher):
    version = _staging()
    with pytest.raises(Forbidden, match="only an admin"):
        model_version_transition(
            version=version, to_stage="production", actor=researcher, reason="x", override=True
        )


def _race_in_a_fresh_database(database_url: str) -> dict:
    """The race script in its own process: its own database, migrated, two threads promoting."""
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "t4dm_site.settings"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.models_registry.promotion_race"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_promotions_at_once_leave_one_production_version_sqlite(tmp_path):
    # A file database as the embedded default runs it (WAL, IMMEDIATE transactions); the test
    # runner's in-memory shared-cache database answers "table is locked" instead of waiting.
    result = _race_in_a_fresh_database(f"sqlite:///{tmp_path / 'race.sqlite3'}")
    assert result["outcomes"] == ["ok", "ok"]
    assert sorted(result["stages"].values()) == ["archived", "production"]


def test_two_promotions_at_once_leave_one_production_version_postgresql():
    import psycopg

    name = f"t4dm_race_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    try:
        result = _race_in_a_fresh_database(PG_URL.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert result["outcomes"] == ["ok", "ok"]
    assert sorted(result["stages"].values()) == ["archived", "production"]
