"""POST/GET /api/v1/workflows without a worker: bad input is a 4xx that leaves no record, existing
dataset versions skip prepare and validate, and the first steps run in-process on the real services."""

from __future__ import annotations

import json

import pytest

from experiments.workflows.models import StepStatus, Workflow, WorkflowStep
from experiments.workflows.services import workflow_step_run
from tests.conftest import DEMO_ROWS

TINY = {"model_base": "t4dm-tiny", "approach": "lora"}


@pytest.fixture
def dataset_id(researcher, artifact_root) -> str:
    from datasets_app.services import dataset_prepare

    version = dataset_prepare(owner=researcher, name="demo", content=DEMO_ROWS.read_bytes(), task_type="chat")
    return version.dataset.public_id


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"source": "knowledge"}, 422, "model_base"),
        ({**TINY, "source": "dataset"}, 400, "dataset_id: required"),
        ({**TINY, "source": "dataset", "dataset_id": "ds-999"}, 404, "ds-999"),
        ({**TINY, "source": "dataset", "dataset_id": "ds-1@vx"}, 400, "ds-001@v2"),
        ({**TINY, "source": "upload"}, 422, "source"),
        ({"model_base": "t4dm-tiny", "approach": "rlhf"}, 400, "approach"),
        ({**TINY, "hyperparams": {"learning_rte": 0.1}}, 400, "learning_rte"),
        ({**TINY, "hyperparams": {"epochs": -1}}, 400, "epochs"),
        ({**TINY, "promote_to": "prod"}, 400, "promote_to"),
        ({**TINY, "evaluation": {"max_samples": 0}}, 400, "max_samples"),
    ],
)
def test_bad_input_is_a_4xx_and_creates_nothing(api, researcher, artifact_root, payload, status, fragment):
    response = api.post(researcher, "/workflows", payload)

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert fragment in error["message"] and error["code"]
    assert not Workflow.objects.exists()


def test_an_upload_that_is_not_a_knowledge_base_is_refused(api, researcher, artifact_root):
    response = api.upload(
        researcher,
        "/workflows/upload",
        content=b"{not json",
        name="kb.json",
        source="knowledge",
        model_base="t4dm-tiny",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert not Workflow.objects.exists()


def test_upload_form_fields_must_be_json_objects(api, researcher, artifact_root):
    response = api.upload(
        researcher,
        "/workflows/upload",
        content=DEMO_ROWS.read_bytes(),
        model_base="t4dm-tiny",
        hyperparams="[1, 2",
    )

    assert response.status_code == 400
    assert "hyperparams" in response.json()["error"]["message"]


def test_evaluators_may_not_start_workflows(api, make_user, artifact_root):
    evaluator = make_user("eve", role="evaluator")

    assert api.post(evaluator, "/workflows/demo").status_code == 403


def test_another_users_workflow_is_not_found(api, researcher, make_user, artifact_root):
    created = api.post(researcher, "/workflows/demo")
    other = make_user("otto")

    assert api.get(other, f"/workflows/{created.json()['workflow_id']}").status_code == 404
    assert api.get(researcher, "/workflows/wf-999").status_code == 404
    assert api.get(researcher, "/workflows/job-001").status_code == 404


def test_only_a_failed_workflow_can_be_retried(api, researcher, artifact_root):
    created = api.post(researcher, "/workflows/demo").json()

    response = api.post(researcher, f"/workflows/{created['workflow_id']}/retry", {})

    assert response.status_code == 409
    assert "only a failed or blocked workflow" in response.json()["error"]["message"]


def test_an_existing_dataset_version_skips_prepare_and_validate(api, researcher, dataset_id):
    response = api.post(researcher, "/workflows", {**TINY, "source": "dataset", "dataset_id": dataset_id})

    assert response.status_code == 201, response.content
    data = response.json()
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert statuses == {
        "prepare": "skipped",
        "validate": "skipped",
        "configure": "pending",
        "train": "pending",
        "evaluate": "pending",
        "version": "pending",
        "promote": "skipped",
    }
    assert data["status"] == "running" and data["input"]["dataset_id"] == f"{dataset_id}@v1"
    assert data["summary"]["dataset"]["dataset_id"] == dataset_id


def test_the_first_steps_run_on_the_real_services(api, researcher, artifact_root):
    # given: an uploaded knowledge base (the shipped example's content)
    from datasets_app.knowledge import EXAMPLE_KB

    created = api.upload(
        researcher,
        "/workflows/upload",
        content=EXAMPLE_KB.read_bytes(),
        name="kb.json",
        source="knowledge",
        model_base="t4dm-tiny",
        hyperparams=json.dumps({"max_steps": 5}),
    )
    assert created.status_code == 201, created.content
    workflow = Workflow.objects.get()
    steps = {s.name: s for s in workflow.steps.all()}

    # when: the step tasks' service runs in this process (no worker here)
    for name in ("prepare", "validate", "configure", "train"):
        workflow_step_run(step_pk=steps[name].pk)

    # then
    data = api.get(researcher, f"/workflows/{workflow.public_id}").json()
    by_name = {s["name"]: s for s in data["steps"]}
    assert [by_name[n]["status"] for n in ("prepare", "validate", "configure")] == ["succeeded"] * 3
    assert by_name["prepare"]["output"]["samples"] > 0
    assert by_name["configure"]["output"]["hyperparameters"]["max_steps"] == 5
    # train started a real job and waits for it to report its end
    assert by_name["train"]["status"] == "running" and by_name["train"]["output"]["job_id"].startswith("job-")
    # a second delivery of the same step message does nothing
    assert workflow_step_run(step_pk=steps["prepare"].pk) is None
    assert WorkflowStep.objects.get(pk=steps["prepare"].pk).attempts == 1
    assert WorkflowStep.objects.filter(status=StepStatus.FAILED).count() == 0


def test_workflows_are_in_the_admin(admin_client, researcher, artifact_root, api):
    api.post(researcher, "/workflows/demo")

    for model in ("workflow", "workflowstep"):
        assert admin_client.get(f"/admin/workflows/{model}/", {"q": "x"}).status_code == 200
    workflow = Workflow.objects.get()
    assert admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").status_code == 200


def test_step_events_are_recorded_for_webhooks(api, researcher, dataset_id):
    # given: a subscriber to workflow events, and a workflow whose configure step must fail (LoRA on a
    # module the model does not have: only the model's own layer names tell)
    from experiments.integrations.models import WebhookDelivery, WebhookSubscription

    WebhookSubscription.objects.create(url="http://127.0.0.1:9/hook", secret="s", event_types=["workflow.*"])
    payload = {
        **TINY,
        "source": "dataset",
        "dataset_id": dataset_id,
        "hyperparams": {"target_modules": ["nope"]},
    }
    created = api.post(researcher, "/workflows", payload).json()
    workflow = Workflow.objects.get()

    # when
    step = workflow.steps.get(name="configure")
    workflow_step_run(step_pk=step.pk)

    # then
    data = api.get(researcher, f"/workflows/{created['workflow_id']}").json()
    configure = next(s for s in data["steps"] if s["name"] == "configure")
    assert data["status"] == "failed" and configure["status"] == "failed"
    assert configure["error"] and configure["error"] in data["error"]
    events = list(WebhookDelivery.objects.order_by("pk").values_list("event_type", flat=True))
    assert events == ["workflow.step_failed", "workflow.failed"]
    payload = WebhookDelivery.objects.get(event_type="workflow.failed").payload
    assert payload["workflow_id"] == created["workflow_id"] and payload["step"]["name"] == "configure"
