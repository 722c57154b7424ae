"""Outbox pruning: rows older than the keep window go, each record's newest row stays, recent rows
stay; the reap command (cron in production) runs it."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from datasets_app.models import DatasetTask, DatasetTaskUpdate
from t4dm_site.housekeeping import outbox_models, prune_outboxes

pytestmark = pytest.mark.django_db


def _rows(task, ages_hours: list[float]) -> list[int]:
    now = timezone.now()
    return [
        DatasetTaskUpdate.objects.create(
            task=task, kind="dataset_task.running", payload={"n": i}, created_at=now - timedelta(hours=age)
        ).id
        for i, age in enumerate(ages_hours)
    ]


def test_old_rows_go_and_each_records_newest_row_stays():
    owner = get_user_model().objects.create_user("housekeeper")
    busy = DatasetTask.objects.create(owner=owner, kind="prepare")
    quiet = DatasetTask.objects.create(owner=owner, kind="prepare")
    busy_ids = _rows(busy, [50, 40, 30, 1, 0.5])  # three old, two recent
    quiet_ids = _rows(quiet, [72, 48])  # only old rows: the newest of them is the cursor a page starts from

    deleted = prune_outboxes(keep_hours=24)

    assert deleted["datasets_app.DatasetTaskUpdate"] == 4
    assert list(DatasetTaskUpdate.objects.filter(task=busy).values_list("id", flat=True)) == busy_ids[3:]
    assert list(DatasetTaskUpdate.objects.filter(task=quiet).values_list("id", flat=True)) == quiet_ids[1:]
    assert prune_outboxes(keep_hours=24)["datasets_app.DatasetTaskUpdate"] == 0  # nothing left to prune


def test_every_live_page_outbox_is_pruned():
    labels = {m._meta.label for m in outbox_models()}
    assert {"datasets_app.DatasetTaskUpdate", "experiments.EvaluationUpdate"} <= labels
    assert any(label.endswith("WorkflowUpdate") for label in labels)


def test_the_reap_command_prunes(settings):
    settings.OUTBOX_KEEP_HOURS = 1
    owner = get_user_model().objects.create_user("cron")
    task = DatasetTask.objects.create(owner=owner, kind="prepare")
    ids = _rows(task, [3, 2, 0])
    out = StringIO()
    call_command("t4dm_reap_lost_jobs", stdout=out)
    assert "pruned 2 old outbox rows" in out.getvalue()
    assert list(DatasetTaskUpdate.objects.filter(task=task).values_list("id", flat=True)) == ids[2:]
