"""The workflow pages: the list with its form and demo button, form errors, the pipeline page."""

from __future__ import annotations

from experiments.workflows.models import Workflow


def test_the_overview_links_to_the_demo_workflow(client, researcher, artifact_root):
    client.force_login(researcher)

    page = client.get("/").content.decode()

    assert 'action="/workflows/demo/"' in page and 'id="start-demo-workflow"' in page
    assert 'href="/workflows/"' in page  # the nav link


def test_the_demo_button_starts_the_example_and_shows_its_pipeline(client, researcher, artifact_root):
    client.force_login(researcher)

    response = client.post("/workflows/demo/")

    workflow = Workflow.objects.get()
    assert response.status_code == 302 and response.url == f"/workflows/{workflow.public_id}/"
    page = client.get(response.url).content.decode()
    for step in ("prepare", "validate", "configure", "train", "evaluate", "version", "promote"):
        assert f'data-step="{step}"' in page
    assert 'id="workflow-data"' in page and "workflow_detail.js" in page
    assert workflow.public_id in client.get("/workflows/").content.decode()


def test_a_bad_form_is_shown_again_with_its_error(client, researcher, artifact_root):
    client.force_login(researcher)

    response = client.post("/workflows/", {"source": "dataset", "model_base": "t4dm-tiny", "epochs": "many"})

    assert response.status_code == 400
    assert "many" in response.content.decode() and not Workflow.objects.exists()
    response = client.post("/workflows/", {"source": "file", "model_base": "t4dm-tiny"})
    assert response.status_code == 400 and "upload the dataset file" in response.content.decode()


def test_an_unknown_workflow_page_is_404(client, researcher, artifact_root):
    client.force_login(researcher)

    assert client.get("/workflows/wf-404/").status_code == 404
