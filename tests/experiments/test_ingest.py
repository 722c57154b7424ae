from __future__ import annotations

import json
import os

import pytest

from experiments.models import MetricPoint
from experiments.services import job_start


@pytest.fixture
def job(demo_config, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return job_start(owner=demo_config.owner, config=demo_config)


@pytest.fixture
def job_token(job):
    return job.issue_token()


def _post(client, job_id: str, token: str, points, raw: str | None = None):
    body = raw if raw is not None else json.dumps({"points": points})
    return client.post(
        f"/api/v1/ingest/jobs/{job_id}/metrics",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_points_are_stored_and_a_repeated_batch_stores_nothing_twice(client, job, job_token):
    points = [{"key": "loss", "step": s, "value": 3.0 - s / 10} for s in range(1, 6)]
    first = _post(client, job.public_id, job_token, points)
    assert first.status_code == 200 and first.json() == {"created": 5, "duplicates": 0}
    again = _post(client, job.public_id, job_token, points)
    assert again.json() == {"created": 0, "duplicates": 5}
    assert MetricPoint.objects.filter(job=job).count() == 5
    job.refresh_from_db()
    assert job.latest_metrics["loss"] == pytest.approx(2.5)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_reject_the_whole_batch(client, job, job_token, bad):
    raw = '{"points": [{"key": "loss", "step": 1, "value": 1.0}, {"key": "loss", "step": 2, "value": BAD}]}'.replace(
        "BAD", bad
    )
    response = _post(client, job.public_id, job_token, None, raw=raw)
    assert response.status_code == 400
    assert (
        "point 1" in response.json()["error"]["message"] and "finite" in response.json()["error"]["message"]
    )
    assert MetricPoint.objects.count() == 0


def test_a_bad_key_is_named_in_the_error(client, job, job_token):
    response = _post(client, job.public_id, job_token, [{"key": "loss with spaces", "step": 1, "value": 1.0}])
    assert response.status_code == 400
    assert "'loss with spaces'" in response.json()["error"]["message"]
    assert MetricPoint.objects.count() == 0


def test_an_unknown_job_is_404_and_a_wrong_job_token_is_refused(
    client, job, job_token, demo_config, django_capture_on_commit_callbacks
):
    assert _post(client, "job-999", job_token, [{"key": "loss", "step": 1, "value": 1}]).status_code == 403
    with django_capture_on_commit_callbacks(execute=False):
        other = job_start(owner=demo_config.owner, config=demo_config)
    wrong = _post(client, other.public_id, job_token, [{"key": "loss", "step": 1, "value": 1}])
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_job_token"
    assert (
        _post(client, job.public_id, job_token + "x", [{"key": "loss", "step": 1, "value": 1}]).status_code
        == 401
    )
    assert MetricPoint.objects.count() == 0


def test_unknown_job_with_a_user_token_is_404(api, researcher):
    response = api.post(
        researcher, "/ingest/jobs/job-999/metrics", {"points": [{"key": "loss", "step": 1, "value": 1}]}
    )
    assert response.status_code == 404


def test_an_oversized_batch_is_413_and_stores_nothing(client, job, job_token, settings):
    settings.INGEST_MAX_BATCH = 10
    response = _post(
        client, job.public_id, job_token, [{"key": "loss", "step": s, "value": 1.0} for s in range(11)]
    )
    assert response.status_code == 413 and "limit is 10" in response.json()["error"]["message"]
    assert MetricPoint.objects.count() == 0


def test_a_malformed_body_is_422_naming_the_field(client, job, job_token):
    response = _post(client, job.public_id, job_token, [{"key": "loss", "step": "one", "value": 1.0}])
    assert response.status_code == 422
    assert "step" in response.json()["error"]["message"]


def test_the_owner_can_log_points_with_an_api_token(api, job):
    response = api.post(
        job.owner,
        f"/ingest/jobs/{job.public_id}/metrics",
        {"points": [{"key": "sdk/acc", "step": 3, "value": 0.5}]},
    )
    assert response.status_code == 200 and response.json()["created"] == 1


def test_ingest_broadcasts_after_commit_only(job, django_capture_on_commit_callbacks):
    from experiments.ingest import PointIn, metric_points_ingest

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        metric_points_ingest(job=job, points=[PointIn(key="loss", step=1, value=1.0)])
    assert len(callbacks) == 1  # the broadcast waits for the commit


def test_ingest_keeps_the_series_rollups_exact(job):
    from experiments.ingest import PointIn, metric_points_ingest
    from experiments.models import MetricRollup

    width = MetricRollup.ROLLUP_WIDTH
    first = [PointIn("loss", s, float(s % 7), wall_time=1000.0 + s) for s in range(0, 100)]
    second = [PointIn("loss", s, float(s % 7), wall_time=1000.0 + s) for s in range(90, 200)]  # 10 repeats
    metric_points_ingest(job=job, points=first)
    metric_points_ingest(job=job, points=second)
    metric_points_ingest(job=job, points=second)  # a retried batch changes nothing
    rollups = {r.bucket: r for r in MetricRollup.objects.filter(job=job, key="loss")}
    for bucket, rollup in rollups.items():
        stored = MetricPoint.objects.filter(
            job=job, key="loss", step__gte=bucket * width, step__lt=(bucket + 1) * width
        )
        values = list(stored.values_list("value", flat=True))
        assert rollup.n == len(values) == stored.count()
        assert (rollup.lo, rollup.hi) == (min(values), max(values))
        assert rollup.last_step == max(stored.values_list("step", flat=True))
        assert rollup.first_wall_time == min(stored.values_list("wall_time", flat=True))
    assert sum(r.n for r in rollups.values()) == MetricPoint.objects.filter(job=job).count() == 200


# --- the same rules on every database -----------------------------------------------------------------
# tests/experiments/test_ingest_postgresql.py reruns this module on PostgreSQL, where the endpoint's
# batch is parsed and checked by the database itself (experiments/ingest.py): every bad batch below must
# get the same answer there, and store nothing.


def test_the_database_is_the_one_asked_for():
    from django.db import connection

    expected = os.environ.get("T4DM_EXPECT_DB_VENDOR")
    assert expected in (None, connection.vendor), f"ran on {connection.vendor}, expected {expected}"


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        ('{"points": [{"key": "loss\\n", "step": 1, "value": 1.0}]}', 400, "bad key"),
        ('{"points": [{"key": 5, "step": 1, "value": 1.0}]}', 422, "key"),
        ('{"points": [{"key": "a b", "step": 1, "value": 1.0}]}', 400, "bad key"),
        ('{"points": [{"key": "loss", "step": -1, "value": 1.0}]}', 400, "negative"),
        ('{"points": [{"key": "loss", "step": 1.5, "value": 1.0}]}', 422, "step"),
        ('{"points": [{"key": "loss", "step": 99999999999999999999, "value": 1.0}]}', 400, "larger than"),
        ('{"points": [{"key": "loss", "step": 1}]}', 422, "value"),
        ('{"points": [{"key": "loss", "step": 1, "value": "NaN"}]}', 400, "finite"),
        ('{"points": [{"key": "loss", "step": 1, "value": 1e400}]}', 400, "finite"),
        ('{"points": [{"key": "loss", "step": 1, "value": 1.0, "wall_time": "Infinity"}]}', 400, "wall_time"),
        ('{"points": [{"key": "loss", "step": 1, "value": 1.0, "epoch": "-Infinity"}]}', 400, "epoch"),
        ('{"points": [1, 2]}', 422, "points.0"),
        ('{"points": {"key": "loss"}}', 422, "points"),
        ('{"point": []}', 422, "points"),
        ("[]", 422, ""),
        ("not json", 422, ""),
        ('{"points": [{"key": "lo\\u0000ss", "step": 1, "value": 1.0}]}', 400, "bad key"),
    ],
)
def test_a_bad_batch_gets_the_same_answer_on_every_database(client, job, job_token, raw, status, words):
    response = _post(client, job.public_id, job_token, None, raw=raw)
    assert response.status_code == status, response.content
    assert words in response.json()["error"]["message"]
    assert MetricPoint.objects.count() == 0


def test_within_a_batch_the_last_value_of_a_step_wins_and_latest_is_the_highest_step(client, job, job_token):
    points = [
        {"key": "loss", "step": 2, "value": 5.0},
        {"key": "loss", "step": 1, "value": 9.0},
        {"key": "loss", "step": 2, "value": 4.0},
        {"key": "acc", "step": 7, "value": 0.5, "wall_time": 1234.5, "epoch": 0.25},
    ]
    response = _post(client, job.public_id, job_token, points)
    assert response.json() == {"created": 3, "duplicates": 1}
    stored = {(p.key, p.step): (p.value, p.wall_time, p.epoch) for p in MetricPoint.objects.filter(job=job)}
    assert stored[("loss", 2)][0] == 4.0 and stored[("loss", 1)][0] == 9.0
    assert stored[("acc", 7)] == (0.5, 1234.5, 0.25)
    assert stored[("loss", 1)][1] > 1.6e9 and stored[("loss", 1)][2] is None  # the server's clock
    job.refresh_from_db()
    assert job.latest_metrics == {"loss": 4.0, "acc": 0.5}
    again = _post(client, job.public_id, job_token, [{"key": "loss", "step": 1, "value": 0.1}])
    assert again.json() == {"created": 0, "duplicates": 1}
    job.refresh_from_db()
    assert job.latest_metrics == {"loss": 4.0, "acc": 0.5}


def test_the_broadcast_carries_the_new_points_in_id_order(client, job, job_token, monkeypatch):
    from experiments.tracking import ingest

    sent = []
    monkeypatch.setattr(ingest, "broadcast_on_commit", lambda pk, message: sent.append((pk, message)))
    points = [{"key": k, "step": s, "value": s / 10} for s in range(3, 0, -1) for k in ("b", "a")]
    _post(client, job.public_id, job_token, points)
    _post(client, job.public_id, job_token, points)  # all repeats: nothing to broadcast
    assert len(sent) == 1 and sent[0][0] == job.pk
    message = sent[0][1]
    broadcast = json.loads(message["points_json"])
    ids = [p["id"] for p in broadcast]
    assert ids == sorted(ids) and (message["first_id"], message["last_id"]) == (ids[0], ids[-1])
    stored = {p.id: (p.key, p.step, p.value, p.wall_time) for p in MetricPoint.objects.filter(job=job)}
    assert {p["id"]: (p["key"], p["step"], p["value"], p["t"]) for p in broadcast} == stored


def test_a_large_batch_is_broadcast_as_its_id_range_without_its_points(client, job, job_token, monkeypatch):
    # Viewers read a large batch from the database (tracking/consumers.py): its JSON text is neither
    # built nor sent through the channel layer; a batch of up to LIVE_INLINE_POINTS still carries it.
    from experiments.tracking import ingest

    sent = []
    monkeypatch.setattr(ingest, "broadcast_on_commit", lambda pk, message: sent.append(message))
    limit = ingest.LIVE_INLINE_POINTS
    _post(client, job.public_id, job_token, [{"key": "a", "step": s, "value": 1.0} for s in range(limit)])
    _post(client, job.public_id, job_token, [{"key": "b", "step": s, "value": 1.0} for s in range(limit + 1)])
    small, large = sent
    assert len(json.loads(small["points_json"])) == limit
    assert "points_json" not in large
    ids = sorted(MetricPoint.objects.filter(job=job, key="b").values_list("id", flat=True))
    assert (large["first_id"], large["last_id"]) == (ids[0], ids[-1]) and len(ids) == limit + 1


def test_loose_json_types_are_read_the_same_on_every_database(client, job, job_token):
    # The Python schema reads "5" as 5 (pydantic's lax mode); PostgreSQL's strict check hands such a
    # batch to it, so both databases store the same.
    raw = (
        '{"points": [{"key": "loss", "step": "5", "value": "1.5"}, {"key": "loss", "step": 6.0, "value": 2},'
        ' {"key": "loss", "step": 7, "value": 3.5, "wall_time": null, "epoch": "0.5"}]}'
    )
    response = _post(client, job.public_id, job_token, None, raw=raw)
    assert response.json() == {"created": 3, "duplicates": 0}
    stored = {p.step: (p.value, p.epoch) for p in MetricPoint.objects.filter(job=job)}
    assert stored == {5: (1.5, None), 6: (2.0, None), 7: (3.5, 0.5)}


def test_postgresql_reads_a_good_batch_without_the_python_parser(client, job, job_token, monkeypatch):
    from django.db import connection

    from experiments.tracking import ingest

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: tests/experiments/test_ingest_postgresql.py runs it")

    def refuse(body):
        raise AssertionError("a good batch reached the Python parser")

    monkeypatch.setattr(ingest, "parse_points", refuse)
    points = [{"key": "loss", "step": s, "value": 1.0 / s, "wall_time": 1000.0 + s} for s in range(1, 101)]
    assert _post(client, job.public_id, job_token, points).json() == {"created": 100, "duplicates": 0}
