"""The embedded default's broker (`CELERY_BROKER_URL=filesystem://`, t4dm_site/broker.py), through the
transport the settings choose for that URL: a message file is never read half-written, a file that
does not parse never crashes a consumer, and a message stays on disk until it is acknowledged — a
consumer killed with it unacknowledged gives it back after the redelivery delay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Producer, Queue

QUEUE = Queue("unit", Exchange("unit", type="direct"), routing_key="unit")


@pytest.fixture(autouse=True)
def _fresh_bindings():
    """kombu keeps a process-wide record of bindings per transport; each test has its own folders."""
    from kombu.transport import filesystem

    filesystem.Transport.global_state.clear()
    yield
    filesystem.Transport.global_state.clear()


def _options(root: Path, **extra) -> dict:
    folders = {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "control_folder": str(root / "control"),
    }
    for folder in ("queue", "control"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return {**folders, "store_processed": False, "polling_interval": 0.02, **extra}


def _connection(root: Path, **extra) -> Connection:
    """What Celery builds from the settings for the embedded default (URL + transport + options)."""
    return Connection(
        settings.CELERY_BROKER_URL,
        transport=getattr(settings, "CELERY_BROKER_TRANSPORT", None),
        transport_options=_options(root, **extra),
    )


def _publish(conn: Connection, *bodies) -> None:
    producer = Producer(conn)
    for body in bodies:
        producer.publish(body, exchange=QUEUE.exchange, routing_key="unit", declare=[QUEUE])


def _receive(conn: Connection, count: int, *, ack: bool = True, timeout: float = 5) -> list:
    received = []

    def on_message(body, message):
        received.append(body)
        if ack:
            message.ack()

    with Consumer(conn, [QUEUE], callbacks=[on_message], prefetch_count=1):
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    return received


def test_the_embedded_default_keeps_its_url_and_uses_the_safe_transport():
    assert settings.CELERY_BROKER_URL == "filesystem://"
    assert settings.CELERY_BROKER_TRANSPORT == "t4dm_site.broker:Transport"
    from celery import current_app

    with current_app.connection_for_read() as conn:
        assert type(conn.transport).__module__ == "t4dm_site.broker"


def test_a_half_written_message_file_does_not_crash_the_consumer(tmp_path):
    queue = tmp_path / "queue"
    with _connection(tmp_path, corrupt_after=60) as conn:
        _publish(conn, {"n": 0})  # declares the queue
        assert _receive(conn, 1) == [{"n": 0}]
        # What kombu's own transport left for a reader: a message file in the queue, still being written.
        # Named to sort before every published message, so each take looks at it first.
        growing = queue / "0_00000000-0000-0000-0000-000000000000.unit.msg"
        growing.write_text('{"body": "eyJuIjo')
        _publish(conn, {"n": 1})
        # Old transport: json.JSONDecodeError out of drain_events ("Unrecoverable error" in a worker).
        assert _receive(conn, 1) == [{"n": 1}]
        # A young unreadable file may still be growing: it is left where it was for a later look.
        assert growing.exists()
    with _connection(tmp_path, corrupt_after=0) as conn:
        _publish(conn, {"n": 2})
        assert _receive(conn, 1) == [{"n": 2}]
    # An old one is set aside, not retried forever and not fatal.
    assert not growing.exists()
    assert (tmp_path / "bad" / growing.name).read_text() == '{"body": "eyJuIjo'


def test_messages_are_written_elsewhere_then_renamed_in_and_private(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, *({"n": i, "pad": "x" * 200_000} for i in range(5)))
    files = sorted((tmp_path / "queue").glob("*.unit.msg"))
    assert len(files) == 5
    for file in files:
        assert json.loads(file.read_bytes())["properties"]["delivery_tag"]  # complete
        assert file.stat().st_mode & 0o777 == 0o600  # job tokens travel in messages
    assert list((tmp_path / "tmp").iterdir()) == []  # where they were written


def test_a_concurrent_publisher_never_hands_out_a_partial_message(tmp_path):
    """A second process publishes large messages while this one consumes as fast as it can."""
    _options(tmp_path)
    script = textwrap.dedent(
        f"""
        import django, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "t4dm_site.settings"
        django.setup()
        from pathlib import Path
        from tests.t4dm_site.test_broker import _connection, _publish
        with _connection(Path({str(tmp_path)!r})) as conn:
            for i in range(150):
                _publish(conn, {{"n": i, "pad": "x" * 300_000}})
        """
    )
    env = {**os.environ, "T4DM_DATA_DIR": str(tmp_path / "data")}
    with _connection(tmp_path, polling_interval=0.001) as conn:
        _publish(conn, {"n": -1})
        assert _receive(conn, 1) == [{"n": -1}]
        publisher = subprocess.Popen([sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env)
        try:
            received = _receive(conn, 150, timeout=120)
        finally:
            publisher.wait(60)
    assert publisher.returncode == 0
    assert [body["n"] for body in received] == list(range(150))


def test_a_taken_message_stays_on_disk_until_it_is_acknowledged(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, {"n": 1})
        received = []
        with Consumer(conn, [QUEUE], callbacks=[lambda body, m: received.append(m)], prefetch_count=1):
            while not received:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
            [claimed] = list((tmp_path / "claims").glob("*/*.unit.msg"))
            assert list((tmp_path / "queue").glob("*.msg")) == []
            received[0].ack()
            assert not claimed.exists()


def test_an_unacknowledged_message_goes_back_when_the_consumer_closes(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, {"n": 1})
        name = next((tmp_path / "queue").glob("*.msg")).name
        assert _receive(conn, 1, ack=False) == [{"n": 1}]
    # A warm shutdown (or basic_reject with requeue) renames it back, in its old place in the line.
    assert [p.name for p in (tmp_path / "queue").glob("*.msg")] == [name]
    with _connection(tmp_path) as conn:
        assert _receive(conn, 1) == [{"n": 1}]
    assert list((tmp_path / "queue").glob("*.msg")) == []


_TAKE_AND_HANG = """
import django, os, sys, time
os.environ["DJANGO_SETTINGS_MODULE"] = "t4dm_site.settings"
django.setup()
from pathlib import Path
from kombu import Consumer
from tests.t4dm_site.test_broker import QUEUE, _connection
with _connection(Path(sys.argv[1])) as conn:
    def took(body, message):
        print("took", body, flush=True)
        time.sleep(600)  # "working" on it: killed before it acknowledges
    with Consumer(conn, [QUEUE], callbacks=[took], prefetch_count=1):
        conn.drain_events(timeout=60)
"""


@pytest.mark.parametrize("redeliver_after", [1.5])
def test_a_killed_consumers_message_is_delivered_again_after_the_delay(tmp_path, redeliver_after):
    with _connection(tmp_path) as conn:
        _publish(conn, {"n": 7})
    env = {**os.environ, "T4DM_DATA_DIR": str(tmp_path / "data")}
    taker = subprocess.Popen(
        [sys.executable, "-c", _TAKE_AND_HANG, str(tmp_path)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert taker.stdout.readline().startswith("took")
        # While its taker lives, the message is nobody else's.
        with _connection(tmp_path, redeliver_after=0) as conn:
            assert _receive(conn, 1, timeout=1.5) == []
    finally:
        taker.kill()  # kill -9: no shutdown handler, no restore
        taker.wait(10)
    assert list((tmp_path / "queue").glob("*.msg")) == []
    with _connection(tmp_path, redeliver_after=redeliver_after) as conn:
        began = time.monotonic()
        assert _receive(conn, 1, timeout=15) == [{"n": 7}]
        waited = time.monotonic() - began
        assert waited >= redeliver_after - 0.2, waited  # not before the delay
    # Exactly once more: the claim is gone, nothing is left to deliver.
    assert list((tmp_path / "claims").rglob("*.msg")) == []
    with _connection(tmp_path, redeliver_after=0) as conn:
        assert _receive(conn, 1, timeout=1) == []
