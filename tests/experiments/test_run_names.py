"""A run's own name and tags (issue 19: "the form has no run name"; "run names and tags editable"):
set with POST /api/v1/jobs and from the training form, changed with PATCH /api/v1/jobs/{id}, shown in the
runs table (and searchable there) and in the job page's header."""

from __future__ import annotations

import pytest


@pytest.fixture
def patch(client):
    def send(user, path: str, data: dict):
        return client.patch(
            f"/api/v1{path}",
            data,
            content_type="application/json",
            headers={"Authorization": f"Bearer {user.raw_token}"},
        )

    return send


@pytest.fixture
def job_id(api, researcher, demo_config, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(
            researcher,
            "/jobs",
            {
                "config_id": demo_config.public_id,
                "name": "  lr 3e-3,   one epoch ",
                "tags": ["baseline", " tiny ", "baseline", ""],
            },
        )
    assert response.status_code == 201, response.content
    return response.json()["job_id"]


def test_a_job_started_with_a_name_and_tags_reports_them(api, researcher, job_id):
    body = api.get(researcher, f"/jobs/{job_id}").json()
    assert body["name"] == "lr 3e-3, one epoch"
    assert body["tags"] == ["baseline", "tiny"]


def test_a_job_started_without_a_name_has_an_empty_one(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        body = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()
    assert (body["name"], body["tags"]) == ("", [])


def test_patch_renames_and_retags_a_run_and_leaves_out_fields_alone(api, researcher, patch, job_id):
    renamed = patch(researcher, f"/jobs/{job_id}", {"name": "the good one"})
    assert renamed.status_code == 200, renamed.content
    assert (renamed.json()["name"], renamed.json()["tags"]) == ("the good one", ["baseline", "tiny"])
    retagged = patch(researcher, f"/jobs/{job_id}", {"tags": ["keep"]}).json()
    assert (retagged["name"], retagged["tags"]) == ("the good one", ["keep"])
    assert api.get(researcher, f"/jobs/{job_id}").json()["tags"] == ["keep"]


def test_patch_refuses_bad_values_and_other_peoples_runs(api, researcher, make_user, patch, job_id):
    too_long = patch(researcher, f"/jobs/{job_id}", {"tags": ["x" * 51]})
    assert too_long.status_code == 400 and too_long.json()["error"]["details"] == {"param": "tags"}
    assert patch(researcher, f"/jobs/{job_id}", {"name": "n" * 201}).status_code in (400, 422)
    other = make_user("otto")
    assert patch(other, f"/jobs/{job_id}", {"name": "mine now"}).status_code == 404
    assert api.get(researcher, f"/jobs/{job_id}").json()["name"] == "lr 3e-3, one epoch"


def test_the_runs_list_finds_a_run_by_name_and_by_its_own_tag(api, researcher, job_id):
    by_name = api.get(researcher, "/runs", q="one epoch").json()
    assert [r["job"]["job_id"] for r in by_name] == [job_id]
    assert by_name[0]["job"]["name"] == "lr 3e-3, one epoch" and "tiny" in by_name[0]["tags"]
    by_tag = api.get(researcher, "/runs", tag="tiny").json()
    assert [r["job"]["job_id"] for r in by_tag] == [job_id]
    assert api.get(researcher, "/runs", tag="nope").json() == []


def test_the_runs_table_and_the_job_page_show_the_name_and_tags(client, researcher, job_id):
    client.force_login(researcher)
    table = client.get("/experiments/").content.decode()
    assert 'class="run-name">lr 3e-3, one epoch<' in table
    assert 'href="/experiments/?tag=tiny">tiny<' in table
    assert 'class="run-name">' in client.get("/experiments/", {"q": "one epoch"}).content.decode()
    page = client.get(f"/jobs/{job_id}/").content.decode()
    assert '<span id="run-name">lr 3e-3, one epoch</span>' in page
    assert f"<title>lr 3e-3, one epoch · {job_id} · T4DM</title>" in page
    assert 'name="name" maxlength="200" value="lr 3e-3, one epoch"' in page


def test_the_training_form_asks_for_a_run_name_and_tags_and_sends_them(client, researcher, artifact_root):
    from pathlib import Path

    client.force_login(researcher)
    html = client.get("/configs/new/").content.decode()
    assert 'name="run_name"' in html and 'name="run_tags"' in html
    script = (Path(__file__).resolve().parents[2] / "static" / "js" / "config_form.js").read_text()
    assert "runFields(configData.config_id)" in script


def test_configs_without_an_experiment_group_under_one_automatic_experiment(researcher, demo_config):
    """Every submission made its own experiment with the same automatic name, so experiments did not
    group runs (issue 19); a second config of the same model on the same dataset joins the first's,
    while another person's runs stay in their own."""
    from experiments.services import training_config_create

    again = training_config_create(
        owner=researcher,
        dataset_id=demo_config.dataset_version.dataset.public_id,
        model_base="t4dm-tiny",
        approach="lora",
        hyperparams={"learning_rate": 1e-3, "epochs": 1},
    )
    assert again.experiment_id == demo_config.experiment_id
    assert demo_config.experiment.name == f"t4dm-tiny on {demo_config.dataset_version.dataset.name}"
    from experiments.models import Experiment

    assert Experiment.objects.filter(owner=researcher, name=demo_config.experiment.name).count() == 1
