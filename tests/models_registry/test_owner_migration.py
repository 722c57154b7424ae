"""The data migration that made model ids a namespace per owner: rows written under the old single
namespace (one model_id holding versions of two researchers) are split per owner."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("models_registry", "0002_stages_gates_exports")]


def _latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return [key for key in executor.loader.graph.leaf_nodes() if key[0] == "models_registry"]


@pytest.mark.django_db(transaction=True)
def test_a_shared_model_id_is_split_per_owner(
    make_user, make_config, succeeded_job, django_capture_on_commit_callbacks
):
    alice, bob = make_user("alice"), make_user("bob")
    admin = make_user("ada", role="admin")
    a_job = succeeded_job(make_config(owner=alice))
    b_job = succeeded_job(make_config(owner=bob, name="other"))

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    OldRegistered = old.get_model("models_registry", "RegisteredModel")
    OldVersion = old.get_model("models_registry", "ModelVersion")
    OldRegistered.objects.create(
        model_id="t4dm-knowledge", description="A's bot", thresholds={"accuracy": 0.9}
    )
    OldVersion.objects.create(model_id="t4dm-knowledge", version="1.0.0", base_model="tiny", job_id=a_job.pk)
    OldVersion.objects.create(
        model_id="t4dm-knowledge", version="1.1.0", base_model="tiny", job_id=b_job.pk, stage="production"
    )
    OldVersion.objects.create(model_id="t4dm-orphan", version="1.0.0", base_model="tiny", created_by="ghost")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(_latest())

    from models_registry.models import ModelVersion, RegisteredModel

    a_model = RegisteredModel.objects.get(owner=alice, model_id="t4dm-knowledge")
    b_model = RegisteredModel.objects.get(owner=bob, model_id="t4dm-knowledge")
    assert list(a_model.versions.values_list("version", flat=True)) == ["1.0.0"]
    assert list(b_model.versions.values_list("version", flat=True)) == ["1.1.0"]
    # the oldest version's owner keeps the row; the other gets a copy (thresholds never lost)
    assert (a_model.description, a_model.thresholds) == ("A's bot", {"accuracy": 0.9})
    assert b_model.thresholds == {"accuracy": 0.9}
    # a version with no job and no such user goes to the first admin
    orphan = ModelVersion.objects.get(model_id="t4dm-orphan")
    assert orphan.registered.owner == admin
    assert not ModelVersion.objects.filter(registered__isnull=True).exists()
