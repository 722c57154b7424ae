"""A workflow whose promotion the deployment gate refuses is 'blocked by gate' with the reason (not a
red 'failed'), and once a person fixes what the gate names, retrying promotes it."""

from __future__ import annotations

# ruff: noqa: F811
import pytest

from experiments.workflows.models import (
    STEP_ORDER,
    StepName,
    StepStatus,
    Workflow,
    WorkflowStatus,
    WorkflowStep,
)
from experiments.workflows.services import workflow_retry, workflow_step_run
from models_registry.services import model_version_auto_create, sample_review_signoff
from tests.models_registry.conftest import (  # noqa: F401
    _no_compare_to_base,
    finished_evaluation,
    make_config,
    succeeded_job,
    trained_final,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def at_promote(researcher, make_config, succeeded_job, finished_evaluation):
    """A workflow whose only step left is promoting its version to production."""
    job = succeeded_job(make_config())
    version = model_version_auto_create(job=job)
    finished_evaluation(job)
    workflow = Workflow.objects.create(owner=researcher, name="to production", status=WorkflowStatus.RUNNING,
                                       input_spec={"promote_to": "production"}, job=job, model_version=version)  # fmt: skip
    for position, name in enumerate(STEP_ORDER[:-1]):
        WorkflowStep.objects.create(
            workflow=workflow, name=name, position=position, status=StepStatus.SUCCEEDED
        )
    step = WorkflowStep.objects.create(workflow=workflow, name=StepName.PROMOTE, position=len(STEP_ORDER) - 1)
    return workflow, step, version


def test_a_refused_promotion_blocks_the_workflow_with_the_reason(client, researcher, at_promote):
    workflow, step, _ = at_promote
    workflow_step_run(step_pk=step.pk)
    workflow.refresh_from_db()
    step.refresh_from_db()
    assert (workflow.status, step.status) == (WorkflowStatus.BLOCKED, StepStatus.BLOCKED)
    assert "Sample outputs reviewed" in workflow.error
    client.force_login(researcher)
    page = client.get(f"/workflows/{workflow.public_id}/").content.decode()
    assert 'id="workflow-status">blocked by gate<' in page
    assert 'class="blocked-reason" id="workflow-error"' in page
    assert "Check the gate again and promote" in page


def test_after_the_sign_offs_a_retry_promotes(researcher, make_user, at_promote):
    workflow, step, version = at_promote
    workflow_step_run(step_pk=step.pk)
    sample_review_signoff(version=version, reviewer=researcher, note="read them")
    workflow_step_run(step_pk=_retry(workflow).pk)  # still one person: blocked again, by the four-eyes rule
    workflow.refresh_from_db()
    assert workflow.status == WorkflowStatus.BLOCKED and "needs 2 different people" in workflow.error
    sample_review_signoff(version=version, reviewer=make_user("sam"), note="agree")
    workflow_step_run(step_pk=_retry(workflow).pk)
    workflow.refresh_from_db()
    version.refresh_from_db()
    assert (workflow.status, version.stage) == (WorkflowStatus.SUCCEEDED, "production")


def _retry(workflow) -> WorkflowStep:
    workflow_retry(workflow=workflow)
    return workflow.steps.get(name=StepName.PROMOTE)
