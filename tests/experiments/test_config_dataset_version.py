"""Issue 19, "Training form: only the latest dataset version can be picked": POST /api/v1/configs
takes dataset_version (default: the latest), the config and its job train on it, and the form
offers the chosen dataset's versions, newest first."""

from __future__ import annotations

import pytest

from datasets_app.services import dataset_clean, dataset_prepare
from experiments.jobs import job_spec_for_worker
from experiments.models import TrainingJob
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl


@pytest.fixture
def two_versions(researcher, artifact_root):
    rows = distinct_chat_rows(30) + [chat("Question 0: what links alpha and alpha in case alpha?", "x")] * 2
    v1 = dataset_prepare(owner=researcher, name="two", content=jsonl(rows), task_type="chat")
    v2 = dataset_clean(version=v1)
    assert (v1.number, v2.number) == (1, 2)
    return v1, v2


def _config(api, user, dataset_id, **extra):
    return api.post(user, "/configs", {"model_base": "t4dm-tiny", "dataset_id": dataset_id, **extra})


def test_an_older_version_is_trained_on(api, researcher, two_versions, django_capture_on_commit_callbacks):
    v1, _ = two_versions
    dataset_id = v1.dataset.public_id
    response = _config(api, researcher, dataset_id, dataset_version=1)
    assert response.status_code == 201, response.content
    assert response.json()["dataset_version"] == 1
    assert api.get(researcher, f"/configs/{response.json()['config_id']}").json()["dataset_version"] == 1

    with django_capture_on_commit_callbacks(execute=False):
        job = api.post(researcher, "/jobs", {"config_id": response.json()["config_id"]}).json()
    job = TrainingJob.objects.get(pk=int(job["job_id"].split("-")[1]))
    assert job.config.dataset_version == v1
    # the worker is handed v1's train file, not v2's
    train = job_spec_for_worker(job=job)["dataset"]["train"]
    assert v1.path != two_versions[1].path
    assert train.startswith(str(v1.path)) and not train.startswith(str(two_versions[1].path))


def test_the_latest_version_is_the_default(api, researcher, two_versions):
    _, v2 = two_versions
    response = _config(api, researcher, v2.dataset.public_id)
    assert response.status_code == 201, response.content
    assert response.json()["dataset_version"] == 2


@pytest.mark.parametrize("number", [3, 0])
def test_a_missing_version_is_named(api, researcher, two_versions, number):
    response = _config(api, researcher, two_versions[0].dataset.public_id, dataset_version=number)
    assert response.status_code in (400, 404), response.content
    assert "dataset_version" in response.json()["error"]["message"]


def test_another_users_dataset_version_is_not_found(api, make_user, two_versions):
    other = make_user("olga")
    response = _config(api, other, two_versions[0].dataset.public_id, dataset_version=1)
    assert response.status_code == 404


def test_the_form_has_a_version_picker(client, researcher, two_versions):
    client.force_login(researcher)
    page = client.get("/configs/new/").content.decode()
    assert 'name="dataset_version"' in page
    assert ">v2 (latest)<" in page
    versions = client.get(f"/api/v1/datasets/{two_versions[0].dataset.public_id}/versions").json()
    assert [v["version"] for v in versions] == [2, 1]  # what the form's script lists, newest first


@pytest.mark.e2e
@pytest.mark.browser
def test_the_form_trains_on_the_version_picked(page, live_server, transactional_db, researcher, two_versions):
    v1, _ = two_versions
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "pw-rita")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    page.goto(live_server.url + "/configs/new/")
    page.select_option("select[name=dataset_id]", v1.dataset.public_id)
    page.wait_for_function("document.querySelectorAll('#dataset-version option').length === 2")
    options = page.eval_on_selector_all("#dataset-version option", "os => os.map(o => [o.value, o.selected])")
    assert options == [["2", True], ["1", False]], options  # newest first, the latest chosen
    page.select_option("#dataset-version", "1")
    # The same dataset chosen again (a change event, as when the page's own first load is still on its
    # way) keeps the version picked.
    page.select_option("select[name=dataset_id]", v1.dataset.public_id)
    page.wait_for_load_state("networkidle")
    assert page.input_value("#dataset-version") == "1"
    page.screenshot(path="/tmp/t19/config_form_version.png", full_page=True)
    page.click("#start-training")
    page.wait_for_url("**/jobs/job-*/")
    from experiments.models import TrainingJob

    assert TrainingJob.objects.order_by("pk").last().config.dataset_version == v1
