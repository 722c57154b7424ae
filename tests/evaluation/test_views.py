"""The evaluation pages render a stored result: deltas coloured by direction, lineage links, plot data."""

from __future__ import annotations

import json

import pytest

from experiments.models import Evaluation, EvaluationStatus


@pytest.fixture
def finished(researcher, demo_config) -> Evaluation:
    return Evaluation.objects.create(
        owner=researcher,
        model_path="/artifacts/jobs/job-001/final",
        dataset_version=demo_config.dataset_version,
        task_type="classification",
        status=EvaluationStatus.SUCCEEDED,
        metrics={"accuracy": 0.95, "f1_score": 0.94},
        base_metrics={"accuracy": 0.25, "f1_score": 0.97},
        comparison_to_base={"accuracy_delta": "+0.7", "f1_score_delta": "-0.03"},
        details={"confusion_matrix": {"labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]}},
        examples=[
            {
                "index": 0,
                "prompt": "x",
                "reference": "a",
                "generated": "a",
                "confidence": 0.9,
                "scores": {"correct": 1.0},
            },
            {
                "index": 1,
                "prompt": "y",
                "reference": "a",
                "generated": "b",
                "confidence": 0.8,
                "scores": {"correct": 0.0},
            },
        ],
        threshold_results=[
            {"metric": "accuracy", "op": ">=", "threshold": 0.85, "value": 0.95, "passed": True}
        ],
    )


def test_the_page_colours_deltas_by_direction(client, researcher, finished):
    client.force_login(researcher)

    response = client.get(f"/evaluations/{finished.public_id}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="eval-delta better"' in html and "+0.7" in html
    assert 'class="eval-delta worse"' in html and "-0.03" in html
    assert "thresholds met" in html
    assert f"/datasets/{finished.dataset_version.dataset.public_id}/" in html
    data = json.loads(html.split('id="eval-data" type="application/json">')[1].split("</script>")[0])
    assert data["details"]["confusion_matrix"]["matrix"] == [[3, 1], [0, 4]]


def test_the_list_page_and_someone_elses_evaluation(client, researcher, make_user, finished):
    client.force_login(researcher)
    assert finished.public_id in client.get("/evaluations/").content.decode()

    client.force_login(make_user("otto"))
    assert client.get(f"/evaluations/{finished.public_id}/").status_code == 404


def test_examples_are_worst_first_and_filterable(api, researcher, finished):
    body = api.get(researcher, f"/evaluations/{finished.public_id}/examples").json()
    assert [e["index"] for e in body["examples"]] == [1, 0]  # the wrong one first

    body = api.get(researcher, f"/evaluations/{finished.public_id}/examples", only="correct").json()
    assert [e["index"] for e in body["examples"]] == [0]

    bad = api.get(researcher, f"/evaluations/{finished.public_id}/examples", only="nonsense")
    assert bad.status_code == 400 and "unknown filter" in bad.json()["error"]["message"]
