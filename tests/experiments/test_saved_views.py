"""Saved runs-table views on the server: per account, replaced by name, the page number left out,
bad input refused with a message, another account's views neither listed nor deletable."""

from __future__ import annotations

import json

import pytest

from experiments.models import SavedRunsView

pytestmark = pytest.mark.django_db


def _post(client, path: str, body) -> object:
    return client.post(f"/experiments/views/{path}/", json.dumps(body), content_type="application/json")


def test_save_replace_list_and_delete(client, researcher, make_user):
    client.force_login(researcher)
    assert _post(client, "save", {"name": "grid q7", "query": "sort=-loss__final&page=3"}).json() == {
        "views": [{"name": "grid q7", "query": "sort=-loss__final"}]
    }
    _post(client, "save", {"name": "grid q7", "query": "group=experiment"})  # same name: replaced
    assert list(SavedRunsView.objects.values_list("name", "query")) == [("grid q7", "group=experiment")]
    assert b'"grid q7"' in client.get("/experiments/").content

    other = make_user("olga")
    client.force_login(other)
    assert b"grid q7" not in client.get("/experiments/").content
    assert _post(client, "delete", {"name": "grid q7"}).status_code == 404
    client.force_login(researcher)
    assert _post(client, "delete", {"name": "grid q7"}).json() == {"views": []}


def test_bad_views_are_refused_with_a_message(client, researcher):
    client.force_login(researcher)
    for body in ({"name": "", "query": "a=1"}, {"name": "x" * 81, "query": ""}):
        response = _post(client, "save", body)
        assert response.status_code == 400 and "name" in response.json()["error"]["message"]
    response = client.post("/experiments/views/save/", "not json", content_type="application/json")
    assert response.status_code == 400
    assert not SavedRunsView.objects.exists()
