"""/evaluations/new/: evaluate_model set up in the browser, through the same service as the API."""

from __future__ import annotations

import pytest

from experiments.models import Evaluation

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, demo_config):
    client.force_login(demo_config.owner)
    return client


def test_the_form_offers_models_datasets_splits_and_metrics(logged_in, demo_config):
    page = logged_in.get("/evaluations/new/").content.decode()
    dataset = demo_config.dataset_version.dataset.public_id
    assert f'value="{dataset}" data-task="chat"' in page
    assert 'value="validation"' in page
    assert (
        'data-tasks="chat instruction completion"><input type="checkbox" name="metrics" value="rouge"' in page
    )
    assert 'href="/evaluations/new/"' in logged_in.get("/evaluations/").content.decode()


def test_a_model_on_a_dataset_split_with_chosen_metrics(logged_in, demo_config):
    dataset = demo_config.dataset_version.dataset.public_id
    response = logged_in.post("/evaluations/new/", {
        "model_path": "t4dm-tiny", "test_dataset": dataset, "split": "test", "metrics": ["bleu", "rouge"],
        "max_samples": "5",
    })  # fmt: skip
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/evaluations/{evaluation.public_id}/"
    assert (evaluation.dataset_version.dataset.public_id, evaluation.split) == (dataset, "test")
    assert evaluation.params["max_samples"] == 5 and evaluation.params["compare_to_base"] is False


def test_a_metric_that_does_not_fit_is_refused_with_the_reason(logged_in, demo_config):
    dataset = demo_config.dataset_version.dataset.public_id
    response = logged_in.post("/evaluations/new/", {
        "model_path": "t4dm-tiny", "test_dataset": dataset, "split": "test", "metrics": ["accuracy"],
    })  # fmt: skip
    assert response.status_code == 400
    assert 'id="eval-error"' in response.content.decode()
    assert not Evaluation.objects.exists()
