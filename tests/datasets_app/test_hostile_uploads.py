"""Issue 17 items 7, 8 and the dataset parts of 12: hostile uploads cost bounded memory and get a clear 4xx.

- An 817-byte dictionary-encoded Parquet file (10,000 rows of one shared 250 KB value: 2.5 GB decoded)
  is refused quickly without materialising its rows.
- The ASGI layer refuses anonymous uploads, uploads with an invalid credential, oversized bodies and
  multipart without a boundary BEFORE the body is read (the `receive` callable is never awaited).
- On the real server (daphne), an anonymous multipart upload and an oversized Content-Length are
  answered from the headers alone: the client never sends the body.
- NUL byte on line 4 → "line 4"; the same bytes under another format are not the earlier dataset;
  `POST /datasets/knowledge` with no body → 400 at once.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import tracemalloc

import pytest
from asgiref.testing import ApplicationCommunicator

from tests.datasets_app.bad_inputs import GOOD, _line, parquet_bomb


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every 2 ms while the block runs."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def _auth(user) -> dict:
    return {"Authorization": f"Bearer {user.raw_token}"}


def test_the_817_byte_parquet_bomb_is_refused_quickly_with_bounded_memory(api, researcher, artifact_root):
    bomb = parquet_bomb()
    assert len(bomb) < 2000

    def upload():
        return api.upload(
            researcher,
            "/datasets",
            content=bomb,
            name="bomb.parquet",
            format="parquet",
            task_type="completion",
        )

    assert upload().status_code == 400  # warm: URL conf, imports
    started = time.monotonic()
    with PeakRss() as rss:
        response = upload()
    elapsed = time.monotonic() - started
    tracemalloc.start()
    try:
        upload()
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert "decoded data exceeds" in error["message"] and "T4DM_MAX_DECODED_BYTES" in error["message"]
    assert elapsed < 10, elapsed
    assert python_peak < 50 * 2**20, python_peak  # to_pylist of the bomb would be 2.5 GB of str
    assert rss.growth < 200 * 2**20, rss.growth


def test_a_parquet_within_the_limit_is_read_in_full(api, researcher, artifact_root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"question {i}", "completion": f"answer {i} " * 3} for i in range(300)]
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)  # dictionary-encoded pages; plain columns
    response = api.upload(
        researcher,
        "/datasets",
        content=out.getvalue(),
        name="ok.parquet",
        format="parquet",
        task_type="completion",
    )
    assert response.status_code == 201, response.content[:300]
    assert response.json()["statistics"]["total_samples"] == 300


def test_text_uploads_over_the_decoded_limit_are_refused_before_parsing(
    api, researcher, artifact_root, settings
):
    settings.DATASET_MAX_DECODED_BYTES = 50_000
    content = _line(GOOD) * 2000  # ~200 KB
    response = api.upload(researcher, "/datasets", content=content, task_type="chat")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_large"
    assert "decoded data exceeds 50000 bytes" in response.json()["error"]["message"]


def test_preparing_jsonl_holds_a_small_multiple_of_the_upload(researcher, artifact_root):
    """Every row's 3-word shingles were kept at once for the near-duplicate check: 11.6x this upload in
    Python objects alone (tracemalloc), now ~3x."""
    from datasets_app.services import dataset_prepare

    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
    rows = []
    for i in range(300):
        text = " ".join(words[(i * j) % 13] + str(j) for j in range(300))
        rows.append(
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": text}]}
        )
    content = b"".join(_line(r) for r in rows)
    dataset_prepare(owner=researcher, name="warm", content=_line(GOOD) * 3)  # tokenizer loaded once
    tracemalloc.start()
    try:
        dataset_prepare(owner=researcher, name="big", content=io.BytesIO(content))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * len(content), (peak, len(content), peak / len(content))


# --- item 12 (dataset parts) ------------------------------------------------------------------------------


def test_a_nul_byte_on_line_4_is_reported_on_line_4(api, researcher, artifact_root):
    content = _line(GOOD) * 3 + b'{"messages": "\x00"}\n' + _line(GOOD)
    for url in ("/datasets", "/datasets/validate"):
        response = api.upload(researcher, url, content=content, task_type="chat")
        assert response.status_code == 400, response.content[:300]
        error = response.json()["error"]
        assert error["message"].startswith("line 4:"), error
        assert error["details"]["line"] == 4


def test_the_same_bytes_under_another_format_are_not_the_earlier_dataset(api, researcher, artifact_root):
    content = _line(GOOD) * 3
    first = api.upload(researcher, "/datasets", content=content, task_type="chat", format="jsonl")
    assert first.status_code == 201
    again = api.upload(researcher, "/datasets", content=content, task_type="chat", format="jsonl")
    assert again.json()["dataset_id"] == first.json()["dataset_id"]  # same bytes, same format: same dataset
    other = api.upload(researcher, "/datasets", content=content, task_type="chat", format="csv")
    assert not (other.status_code == 201 and other.json()["dataset_id"] == first.json()["dataset_id"])
    assert other.status_code == 400 or other.json()["format"] == "csv", other.content[:300]


def test_knowledge_with_no_body_is_refused_at_once(client, researcher, artifact_root):
    started = time.monotonic()
    response = client.post("/api/v1/datasets/knowledge", headers=_auth(researcher))
    assert time.monotonic() - started < 5
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_source"


# --- the ASGI layer: refusals before the body is read --------------------------------------------------


async def _asgi(path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"", method: str = "POST"):
    """Drive t4dm_site.asgi.application; returns (status, json body, whether receive() was called)."""
    from t4dm_site.asgi import application

    called = {"receive": 0}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    original_receive = communicator.input_queue.get

    async def counting_get():
        called["receive"] += 1
        return await original_receive()

    communicator.input_queue.get = counting_get
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(30)
    content = await communicator.receive_output(30)
    await communicator.wait(5)
    return start["status"], json.loads(content["body"] or b"null"), called["receive"]


def _multipart_headers(length: int, *extra: tuple[bytes, bytes], boundary: bool = True):
    content_type = b"multipart/form-data" + (b"; boundary=xyz" if boundary else b"")
    return [(b"content-type", content_type), (b"content-length", str(length).encode()), *extra]


UPLOAD_PATHS = ("/api/v1/datasets", "/api/v1/datasets/validate", "/api/v1/human-eval/tasks/upload")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_anonymous_and_invalid_credential_uploads_are_refused_before_the_body_is_read(make_user):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(make_user)("uma")
    cases = [
        [],
        [(b"authorization", b"Bearer t4dm_not-a-real-token")],
        [(b"authorization", b"Bearer t4job_1_guess")],
        [(b"cookie", b"sessionid=forged-session-key")],
    ]
    for path in UPLOAD_PATHS:
        for extra in cases:
            status, body, reads = await _asgi(path, _multipart_headers(100_000_000, *extra))
            assert status == 401, (path, extra, body)
            assert body["error"]["code"] == "not_authenticated"
            assert reads == 0, "the body was read"
    # A valid token passes the gate: the request reaches the endpoint, which reads the body.
    good = [(b"authorization", f"Bearer {user.raw_token}".encode())]
    form = b'--xyz\r\nContent-Disposition: form-data; name="task_type"\r\n\r\nchat\r\n--xyz--\r\n'
    status, body, reads = await _asgi("/api/v1/datasets/validate", _multipart_headers(len(form), *good), form)
    assert status == 400 and body["error"]["code"] == "no_source" and reads >= 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_oversized_bodies_and_multipart_without_boundary_are_refused_before_reading(
    make_user, settings
):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(make_user)("uma")
    good = (b"authorization", f"Bearer {user.raw_token}".encode())
    settings.MAX_UPLOAD_BYTES = 10_000
    status, body, reads = await _asgi("/api/v1/datasets", _multipart_headers(10_001, good))
    assert (status, body["error"]["code"], reads) == (413, "payload_too_large", 0)
    assert "T4DM_MAX_UPLOAD_BYTES" in body["error"]["message"]
    # A body without Content-Length that streams past the limit is cut off with 413.
    streamed = [(b"content-type", b"application/json"), good]
    status, body, _ = await _asgi("/api/v1/datasets/validate", streamed, b"x" * 20_000)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    settings.MAX_UPLOAD_BYTES = 1 << 30
    for path in UPLOAD_PATHS:
        status, body, reads = await _asgi(path, _multipart_headers(20, good, boundary=False), b"--x\r\n")
        assert (status, body["error"]["code"], reads) == (400, "invalid_multipart", 0), path


# --- the real server -----------------------------------------------------------------------------------


def _raw_request(base_url: str, head: bytes, timeout: float = 10) -> bytes:
    """Send only the request line and headers; the body is never sent. Returns what the server answers."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.e2e
def test_daphne_answers_hostile_upload_headers_without_reading_the_body(embedded_platform):
    import httpx

    length = 100 * 2**20
    anonymous = (
        b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: %d\r\n\r\n" % length
    )
    answer = _raw_request(embedded_platform.base_url, anonymous)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b'"not_authenticated"' in answer
    oversized = (
        b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: %d\r\n\r\n"
        % (embedded_platform.token.encode(), 2 * 2**30)
    )
    answer = _raw_request(embedded_platform.base_url, oversized)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    with embedded_platform.http() as http:
        no_boundary = http.post(
            "/datasets", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
        )
        assert no_boundary.status_code == 400 and no_boundary.json()["error"]["code"] == "invalid_multipart"
        assert http.get("/datasets").status_code == 200  # still serving
    # A signed-in browser's upload passes the gate (its session is checked, not just present).
    from tests.platform import ADMIN_PASSWORD

    with httpx.Client(base_url=embedded_platform.base_url, timeout=30) as browser:
        browser.get("/login/")
        token = browser.cookies["csrftoken"]
        login = browser.post(
            "/login/", data={"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token}
        )
        assert login.status_code in (200, 302) and "sessionid" in browser.cookies
        validated = browser.post(
            "/api/v1/datasets/validate",
            files={"file": ("d.jsonl", _line(GOOD) * 3)},
            data={"task_type": "chat"},
            headers={
                "X-CSRFToken": browser.cookies["csrftoken"],
                "Referer": embedded_platform.base_url + "/",
            },
        )
        assert validated.status_code == 200, validated.text[:300]
        csrf = browser.cookies["csrftoken"]
    with httpx.Client(base_url=embedded_platform.base_url, timeout=30) as forger:
        forger.cookies.set("sessionid", "forged-session-key")
        forger.cookies.set("csrftoken", csrf)
        forged = forger.post(
            "/api/v1/datasets/validate",
            files={"file": ("d.jsonl", _line(GOOD) * 3)},
            headers={"X-CSRFToken": csrf},
        )
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "not_authenticated"


def test_a_save_to_disk_folder_over_the_decoded_limit_is_refused(
    researcher, artifact_root, import_root, settings
):
    import datasets

    from datasets_app.services import dataset_prepare
    from t4dm_site.errors import InvalidInput

    rows = [{"instruction": f"say {i}", "input": "", "output": "x" * 1000} for i in range(100)]
    datasets.Dataset.from_list(rows).save_to_disk(str(import_root / "saved"))
    settings.DATASET_MAX_DECODED_BYTES = 50_000
    with pytest.raises(InvalidInput) as refused:
        dataset_prepare(owner=researcher, name="saved", source_path="saved", task_type="instruction")
    assert refused.value.code == "too_large"
    settings.DATASET_MAX_DECODED_BYTES = 10_000_000
    stored = dataset_prepare(owner=researcher, name="saved", source_path="saved", task_type="instruction")
    assert stored.statistics["total_samples"] == 100
