"""Issue 19: the version page's Export no longer blocks the request for the whole merge and pack. It
queues the export (a `queued` row; the work is a Celery task after commit), the page comes back at
once and shows the export's state; the task records each step, then the download link, or the error."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from models_registry.models import ModelExport
from models_registry.services import model_version_auto_create
from models_registry.tasks import export_version_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_config, succeeded_job):
    return model_version_auto_create(job=succeeded_job(make_config()))


def _page(client, version) -> str:
    return client.get(f"/models/{version.model_id}/{version.version}/").content.decode()


def test_export_is_queued_then_the_task_makes_the_download(
    client, researcher, version, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    url = f"/models/{version.model_id}/{version.version}/export/"
    # when: Export is clicked; the request only queues it
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(url, {"merge": "on"})
    assert response.status_code == 302 and response["Location"].endswith("#exports")
    export = ModelExport.objects.get()
    assert (export.status, export.archive_path) == ("queued", "")
    assert len(queued) == 1  # the Celery task, sent after commit
    # then: the page shows it under way, with no download yet, and the page's script follows it
    html = _page(client, version)
    item = html.split(f'data-export="{export.pk}"')[1].split("</li>")[0]
    assert 'data-status="queued"' in item and "<progress" in item and "download" not in item
    assert 'data-busy="true"' in html
    # when: the worker runs the task
    export_version_task(export.pk)
    # then: succeeded, with a working download and the API telling the same state
    export.refresh_from_db()
    assert (export.status, export.progress, export.error) == ("succeeded", 1.0, "")
    html = _page(client, version)
    item = html.split(f'data-export="{export.pk}"')[1].split("</li>")[0]
    assert 'data-status="succeeded"' in item and "download .tar.gz" in item and "<progress" not in item
    download = client.get(f"/models/{version.model_id}/{version.version}/exports/{export.pk}/download/")
    assert download.status_code == 200
    archive = Path(export.archive_path)
    with tarfile.open(archive) as tar:
        assert any(name.endswith("MANIFEST.json") for name in tar.getnames())
    api = client.get(f"/api/v1/models/{version.model_id}/versions/{version.version}").json()
    assert api["exports"][0]["status"] == "succeeded" and api["exports"][0]["progress"] == 1.0


def test_a_failed_export_shows_its_error(
    client, researcher, version, tmp_path, django_capture_on_commit_callbacks
):
    import shutil

    # given: a version whose folder is a copy (the trained adapter is shared by the session's tests)
    copy = tmp_path / "final"
    shutil.copytree(version.artifact_path, copy)
    version.artifact_path = str(copy)
    version.save(update_fields=["artifact_path"])
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(f"/models/{version.model_id}/{version.version}/export/", {"merge": "on"})
    export = ModelExport.objects.get()
    # given: the trained weights went missing after the export was queued
    for weights in copy.glob("adapter_model.*"):
        weights.unlink()
    export_version_task(export.pk)
    export.refresh_from_db()
    assert export.status == "failed"
    assert export.error.startswith("loading the trained model: ")  # the step it failed at, and why
    html = _page(client, version)
    item = html.split(f'data-export="{export.pk}"')[1].split("</li>")[0]
    assert 'data-status="failed"' in item and "failed:" in item and "download" not in item
    assert 'data-busy="false"' in html
    downloaded = client.get(f"/models/{version.model_id}/{version.version}/exports/{export.pk}/download/")
    assert downloaded.status_code == 404
