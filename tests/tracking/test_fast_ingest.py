"""The worker ingest's lean ASGI path (t4dm_site/fast_ingest.py) in production mode (PostgreSQL, Redis),
under both ASGI servers `t4dm_up` runs (daphne, and uvicorn as `make web` does): the same answers,
storing rules and live broadcast as the Django endpoint, whichever path a request takes. Error cases go
to the endpoint, so their status and message are the endpoint's."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.platform import add_uvicorn, production_web, running_jobs, served_by, stop_production_web

pytestmark = [pytest.mark.e2e, pytest.mark.production]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    data = tmp_path_factory.mktemp("fast-ingest")
    platform = production_web(data, asgi_processes=1)  # daphne
    try:
        add_uvicorn(platform, data)
        yield platform
    finally:
        stop_production_web(platform)


@pytest.fixture(params=["daphne", "uvicorn"])
def web(request, platform):
    """The platform, with `base_url` the chosen server's (both share the database and Redis)."""
    with served_by(platform, request.param):
        yield platform


def _series(web, job_id: str, key: str) -> list:
    response = httpx.get(
        f"{web.base_url}/api/v1/jobs/{job_id}/metrics",
        params={"key": key, "max_points": 100_000},
        headers={"Authorization": f"Bearer {web.token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [(step, value) for step, value, _ in response.json()["series"][key]]


def test_one_step_batches_are_stored_once_and_the_first_copy_wins(web):
    [(job_id, token)] = running_jobs(web, 1)
    url = f"{web.base_url}/api/v1/ingest/jobs/{job_id}/metrics"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for step in range(20):
            answer = http.post(url, json={"points": [{"key": "loss", "step": step, "value": 1.0 / (step + 1)},
                                                     {"key": "lr", "step": step, "value": 0.1}]})  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"created": 2, "duplicates": 0}
            assert answer.headers["content-type"].startswith("application/json")
            assert answer.headers["x-content-type-options"] == "nosniff"
        # A retry of step 3 with another value: counted as a duplicate, the stored value stays.
        again = http.post(url, json={"points": [{"key": "loss", "step": 3, "value": 99.0}]})
        assert again.json() == {"created": 0, "duplicates": 1}
        # Inside one batch the last copy of a (key, step) is the one stored.
        inside = http.post(url, json={"points": [{"key": "acc", "step": 0, "value": 1.0},
                                                 {"key": "acc", "step": 0, "value": 2.0}]})  # fmt: skip
        assert inside.json() == {"created": 1, "duplicates": 1}
    assert _series(web, job_id, "loss") == [(s, 1.0 / (s + 1)) for s in range(20)]
    assert _series(web, job_id, "acc") == [(0, 2.0)]
    job = httpx.get(
        f"{web.base_url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {web.token}"}, timeout=30
    ).json()
    assert job["metrics"]["loss"] == 1.0 / 20  # the job's latest values, folded in by the same statement


def test_refused_requests_get_the_endpoints_answers(web):
    (job_id, token), (other_id, other_token) = running_jobs(web, 2)
    url = f"{web.base_url}/api/v1/ingest/jobs/{job_id}/metrics"
    one = {"points": [{"key": "loss", "step": 0, "value": 1.0}]}

    def post(body, token=token, **kwargs):
        return httpx.post(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=30, content=body, **kwargs
        )

    wrong_job = post(json.dumps(one), token=other_token)
    assert wrong_job.status_code == 403 and wrong_job.json()["error"]["code"] == "wrong_job_token"
    forged = post(json.dumps(one), token=token[:-4] + "AAAA")
    assert forged.status_code == 401
    bad_point = post(json.dumps({"points": [{"key": "loss", "step": 1, "value": 1.0},
                                            {"key": "bad key!", "step": 2, "value": 1.0}]}))  # fmt: skip
    assert bad_point.status_code == 400 and "point 1" in bad_point.json()["error"]["message"]
    negative = post(json.dumps({"points": [{"key": "loss", "step": -1, "value": 1.0}]}))
    assert negative.status_code == 400 and "negative" in negative.json()["error"]["message"]
    assert post(b"{not json").status_code == 422
    assert post(json.dumps({"points": [{"key": "loss", "step": 1.5, "value": 1.0}]})).status_code == 422
    too_many = post(json.dumps({"points": [{"key": "loss", "step": s, "value": 1.0} for s in range(5001)]}))
    assert too_many.status_code == 413 and "limit" in too_many.json()["error"]["message"]
    # Nothing of the refused batches was stored; the user's API token (the Django path) still works.
    assert httpx.get(
        f"{web.base_url}/api/v1/jobs/{job_id}/metrics", params={"key": "loss"},
        headers={"Authorization": f"Bearer {web.token}"}, timeout=30,
    ).json()["series"].get("loss", []) == []  # fmt: skip
    by_user = httpx.post(url, headers={"Authorization": f"Bearer {web.token}"}, json=one, timeout=30)
    assert by_user.json() == {"created": 1, "duplicates": 0}
    assert post(json.dumps(one)).json() == {"created": 0, "duplicates": 1}


def test_a_viewer_gets_the_points_live(web):
    import websockets

    [(job_id, token)] = running_jobs(web, 1)
    url = f"{web.base_url}/api/v1/ingest/jobs/{job_id}/metrics"
    ws_url = web.base_url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"

    async def watch():
        headers = {"Authorization": f"Bearer {web.token}", "Origin": web.base_url}
        async with websockets.connect(ws_url, additional_headers=headers) as socket:
            got: list = []
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), 30))
            assert snapshot["type"] == "snapshot", snapshot
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                for step in range(5):
                    answer = await http.post(
                        url, json={"points": [{"key": "loss", "step": step, "value": step}]}
                    )
                    assert answer.json()["created"] == 1
            while len(got) < 5:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                if message["type"] == "points":
                    got.extend((p["step"], p["value"]) for p in message["points"])
            return got

    assert asyncio.run(watch()) == [(s, float(s)) for s in range(5)]
    if web.base_url == web.uvicorn_url:  # t4dm_up's uvicorn writes the access log like daphne
        assert f"/api/v1/ingest/jobs/{job_id}/metrics" in web.access_log.read_text()
