"""/health: database, broker and channel layer, for load balancers; 503 names what failed."""

from __future__ import annotations

import socket


def test_it_works(client, db):
    response = client.get("/health")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "broker", "channel_layer"}
    assert all(check["ok"] for check in body["checks"].values())


def test_an_unreachable_channel_layer_is_named(client, db, settings):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"]},
        }
    }
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failed"] == ["channel_layer"]
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert b"127.0.0.1" not in response.content  # the error's type only: a URL could carry a password
