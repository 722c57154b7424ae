"""Isolation between researchers in the registry (issue 17, item 1): model ids are a namespace per
owner. Two researchers A (alice) and B (bob) whose datasets share a name each get their own model; B
reaches none of A's records through any registry endpoint or page, and gets the 404 a missing model
gets. Admins see all."""

from __future__ import annotations

import json

import pytest

from models_registry.models import ModelVersion, RegisteredModel, SampleReviewSignoff, StageTransition
from models_registry.services import model_version_auto_create, model_version_create, model_version_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def admin(make_user):
    return make_user("ada", role="admin")


@pytest.fixture
def a_version(alice, make_config, succeeded_job):
    """A's t4dm-knowledge 1.0.0 (the default id of a dataset named "knowledge"), in staging."""
    version = model_version_auto_create(job=succeeded_job(make_config(owner=alice)))
    model_version_transition(version=version, to_stage="staging", actor=alice, reason="trial")
    return version


@pytest.fixture
def b_job(bob, make_config, succeeded_job):
    """B's succeeded job on B's own dataset, also named "knowledge" (different rows)."""
    from tests.models_registry.test_versioning import _fewer_rows

    return succeeded_job(make_config(owner=bob, rows=_fewer_rows()))


def _a_state(version) -> dict:
    registered = RegisteredModel.objects.get(pk=version.registered_id)
    version.refresh_from_db()
    return {
        "versions": sorted(
            ModelVersion.objects.filter(registered=registered).values_list("version", flat=True)
        ),
        "thresholds": registered.thresholds,
        "description": registered.description,
        "stage": version.stage,
        "card": version.model_card,
        "signoffs": SampleReviewSignoff.objects.filter(version=version).count(),
        "transitions": StageTransition.objects.filter(version=version).count(),
        "exports": version.exports.count(),
    }


def test_the_same_dataset_name_gives_each_researcher_their_own_model(a_version, b_job, alice, bob):
    # when: B's job ends and auto_version registers it under the same default id
    b_version = model_version_auto_create(job=b_job)
    # then: B's first version of B's own model; nothing of A's is added to, or mentioned
    assert (b_version.version, b_version.version_reason) == ("1.0.0", "first version of this model")
    assert b_version.model_id == a_version.model_id == "t4dm-knowledge"
    assert b_version.registered_id != a_version.registered_id
    assert b_version.registered.owner == bob and a_version.registered.owner == alice
    assert list(a_version.registered.versions.values_list("version", flat=True)) == ["1.0.0"]


def test_b_registering_a_job_under_as_model_id_creates_bs_own_model(api, a_version, b_job, alice, bob):
    before = _a_state(a_version)
    response = api.post(bob, "/models/versions", {"job_id": b_job.public_id, "model_id": a_version.model_id})
    # then: 201 for B's own model of that name (B's namespace), A's model untouched
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["version"], body["version_reason"]) == ("1.0.0", "first version of this model")
    assert (body["model_id"], body.get("owner")) == ("t4dm-knowledge", "bob")
    assert _a_state(a_version) == before
    assert [v["version"] for v in api.get(alice, "/models/t4dm-knowledge/versions").json()] == ["1.0.0"]
    assert [v["owner"] for v in api.get(bob, "/models/t4dm-knowledge/versions").json()] == ["bob"]


def test_b_gets_404_from_every_registry_endpoint_of_as_model(api, client, a_version, alice, bob):
    from models_registry.services import model_version_export

    export = model_version_export(version=a_version, merge=False, actor=alice)
    before = _a_state(a_version)
    ref = f"/models/{a_version.model_id}/versions/{a_version.version}"
    headers = {"Authorization": f"Bearer {bob.raw_token}"}
    calls = [
        ("GET", f"/models/{a_version.model_id}/versions", None),
        (
            "PATCH",
            f"/models/{a_version.model_id}",
            {"description": "mine now", "thresholds": {"accuracy": 0.1}},
        ),
        ("GET", ref, None),
        ("GET", ref + "/metadata", None),
        ("GET", ref + "/gate", None),
        ("POST", ref + "/stage", {"stage": "production", "reason": "x"}),
        ("POST", ref + "/signoff", {"note": "looked"}),
        ("PUT", ref + "/model-card", {"text": "# mine\n\nA card written by someone else entirely."}),
        ("POST", ref + "/exports", {"merge": False}),
        ("GET", ref + f"/exports/{export.pk}/archive", None),
        ("GET", f"/models/{a_version.model_id}/versions?owner=alice", None),
        ("GET", ref + "?owner=alice", None),
    ]
    for method, path, body in calls:
        url = "/api/v1" + path
        if body is None:
            response = client.generic(method, url, headers=headers)
        else:
            response = client.generic(
                method, url, json.dumps(body), content_type="application/json", headers=headers
            )
        assert response.status_code == 404, (method, path, response.content)
        error = response.json()["error"]
        assert error["code"] == "not_found" and "does not exist" in error["message"], (method, path, error)
    # the same answer as for a model that does not exist at all
    missing = api.get(bob, "/models/t4dm-nothing/versions/1.0.0").json()["error"]
    mine = api.get(bob, ref).json()["error"]
    assert mine["message"].replace(a_version.model_id, "X") == missing["message"].replace("t4dm-nothing", "X")
    assert api.get(bob, "/models").json() == []
    assert _a_state(a_version) == before


def test_b_cannot_promote_into_as_production_or_archive_as_version(api, a_version, b_job, admin, bob):
    model_version_transition(
        version=a_version, to_stage="production", actor=admin, override=True, reason="ok"
    )
    b_version = model_version_auto_create(job=b_job)
    model_version_transition(version=b_version, to_stage="staging", actor=bob, reason="trial")
    model_version_transition(
        version=b_version, to_stage="production", actor=admin, override=True, reason="ok"
    )
    # each owner's model has its own production version: B's promotion archived nothing of A's
    a_version.refresh_from_db()
    assert a_version.stage == "production"
    assert ModelVersion.objects.filter(model_id="t4dm-knowledge", stage="production").count() == 2


def test_browser_pages_follow_the_same_rule(client, a_version, bob):
    from models_registry.services import model_version_export

    export = model_version_export(version=a_version, merge=False, actor=a_version.registered.owner)
    client.force_login(bob)
    base = f"/models/{a_version.model_id}"
    ref = f"{base}/{a_version.version}"
    for url in (
        f"{base}/",
        f"{ref}/",
        f"{ref}/playground/",
        f"{ref}/exports/{export.pk}/download/",
        f"{ref}/?owner=alice",
    ):
        assert client.get(url).status_code == 404, url
    for url, data in (
        (f"{ref}/stage/", {"stage": "production", "reason": "x"}),
        (f"{ref}/signoff/", {"note": "seen"}),
        (f"{ref}/export/", {}),
        (f"{ref}/evaluate/", {}),
        (f"{base}/compare/", {"version_a": "1.0.0", "version_b": "1.0.0"}),
    ):
        assert client.post(url, data).status_code == 404, url
    assert a_version.model_id not in client.get("/models/").content.decode()
    a_version.refresh_from_db()
    assert a_version.stage == "staging" and not a_version.signoffs.exists() and a_version.exports.count() == 1


def test_admins_see_every_owners_model_and_name_the_owner_when_ids_collide(
    api, client, a_version, b_job, admin
):
    model_version_auto_create(job=b_job)
    listed = api.get(admin, "/models").json()
    assert sorted((m["model_id"], m["owner"]) for m in listed) == [
        ("t4dm-knowledge", "alice"),
        ("t4dm-knowledge", "bob"),
    ]
    ambiguous = api.get(admin, "/models/t4dm-knowledge/versions")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["error"]["code"] == "ambiguous_model_id"
    assert ambiguous.json()["error"]["details"] == {"owners": ["alice", "bob"]}
    alices = api.get(admin, "/models/t4dm-knowledge/versions", owner="alice").json()
    assert [(v["owner"], v["job_id"]) for v in alices] == [("alice", a_version.job.public_id)]
    client.force_login(admin)
    page = client.get("/models/").content.decode()
    assert "?owner=alice" in page and "?owner=bob" in page
    assert client.get("/models/t4dm-knowledge/1.0.0/?owner=alice").status_code == 200


def test_an_admin_registering_someones_job_files_it_under_that_owner(admin, b_job, bob):
    version = model_version_create(job=b_job, model_id="t4dm-shared-name", created_by="ada")
    assert version.registered.owner == bob
    assert not RegisteredModel.objects.filter(owner=admin).exists()


@pytest.mark.django_db(transaction=True)
def test_the_playground_socket_refuses_another_owners_version(a_version, bob):
    import asyncio

    from channels.testing import WebsocketCommunicator

    from t4dm_site.asgi import application

    async def connect(path: str):
        headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1"),
                   (b"authorization", f"Bearer {bob.raw_token}".encode())]  # fmt: skip
        communicator = WebsocketCommunicator(application, path, headers=headers)
        result = await communicator.connect()
        await communicator.disconnect()
        return result

    for path in (
        f"/ws/playground/{a_version.model_id}/{a_version.version}/",
        f"/ws/playground/{a_version.model_id}/{a_version.version}/?owner=alice",
    ):
        assert asyncio.run(connect(path)) == (False, 4404), path
