"""Item 10: hostile uploads and paths. Binary data named .jsonl, compressed files and archives, a
Parquet decompression bomb, oversized bodies, path traversal (import paths, worker-reported folders,
export archive members) and filenames with control characters: each a clear 4xx in the API's error
shape, and nothing written outside the artifact root. (Row-level bad inputs: tests/datasets_app.)"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets_app.models import Dataset
from tests.conftest import DEMO_ROWS
from tests.datasets_app.bad_inputs import GOOD, _binary, _parquet, _zip

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(4000)

# Every endpoint that takes a file, with the other fields it needs.
UPLOADS = [
    ("/api/v1/datasets", {"task_type": "chat"}),
    ("/api/v1/datasets/validate", {"task_type": "chat"}),
    ("/api/v1/datasets/knowledge", {}),
    (
        "/api/v1/human-eval/tasks/upload",
        {"setup": json.dumps({"evaluators": ["eve"], "model_path": "t4dm-tiny"})},
    ),
    ("/v1/files", {"purpose": "fine-tune"}),
]


@pytest.fixture
def owner(people):
    return people["owner"]


def _auth(user) -> dict:
    return {"Authorization": f"Bearer {user.raw_token}"}


def _files_outside(root: Path, artifact_root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_relative_to(artifact_root)}


def _error_message(response) -> str:
    return response.json()["error"]["message"]


def test_binary_named_jsonl_is_refused_by_every_upload_endpoint(client, owner, artifact_root):
    for content in (PNG, ELF, _binary()):
        for url, fields in UPLOADS:
            response = client.post(
                url, {"file": SimpleUploadedFile("data.jsonl", content), **fields}, headers=_auth(owner)
            )
            assert 400 <= response.status_code < 500, (url, response.status_code, response.content[:300])
            assert response.json()["error"]["message"], url
    assert Dataset.objects.count() == 0
    assert not (artifact_root / "datasets").exists() or not any(
        (artifact_root / "datasets").rglob("*.parquet")
    )


def test_compressed_files_and_archives_are_refused(client, owner, artifact_root):
    kinds = [
        ("data.jsonl.gz", gzip.compress(b'{"messages": []}\n' * 1000), "gzip"),
        ("data.zip", _zip(), "zip archive"),
    ]
    for name, content, expect in kinds:
        for url, fields in (UPLOADS[0], UPLOADS[4]):
            response = client.post(
                url, {"file": SimpleUploadedFile(name, content), **fields}, headers=_auth(owner)
            )
            assert response.status_code == 400 and expect in _error_message(response), response.content[:300]
    assert Dataset.objects.count() == 0


def test_a_parquet_decompression_bomb_is_refused(client, owner, artifact_root, settings):
    settings.DATASET_MAX_DECODED_BYTES = 1_000_000
    row = {"messages": [{"role": "user", "content": "a" * 2000}, {"role": "assistant", "content": "b"}]}
    bomb = _parquet([row] * 2000)  # ~4 MB of text, a few KB on disk
    assert len(bomb) < 100_000
    response = client.post(
        "/api/v1/datasets",
        {"file": SimpleUploadedFile("bomb.parquet", bomb), "format": "parquet", "task_type": "chat"},
        headers=_auth(owner),
    )
    assert response.status_code == 400 and "DATASET_MAX_DECODED_BYTES" in _error_message(response)
    small = client.post(
        "/api/v1/datasets",
        {
            "file": SimpleUploadedFile("ok.parquet", _parquet([GOOD] * 20)),
            "format": "parquet",
            "task_type": "chat",
        },
        headers=_auth(owner),
    )
    assert small.status_code == 201


def test_an_oversized_upload_is_refused_with_413_before_it_is_parsed(client, owner, artifact_root, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    for url, fields in UPLOADS:
        response = client.post(
            url,
            {"file": SimpleUploadedFile("big.jsonl", DEMO_ROWS.read_bytes()), **fields},
            headers=_auth(owner),
        )
        assert response.status_code == 413, url
        assert response.json()["error"]["code"] == "payload_too_large"
        assert "T4DM_MAX_UPLOAD_BYTES" in response.json()["error"]["message"]
    assert Dataset.objects.count() == 0


def _multipart(filename: str, content: bytes, **fields: str) -> tuple[bytes, str]:
    """A hand-built multipart body: the filename goes on the wire byte for byte."""
    boundary = "t4dmBoundary7MA4YWxk"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_control_characters_in_an_uploaded_filename_never_reach_storage(client, owner, artifact_root):
    """Django's multipart parser drops non-printable characters from a part's filename before any code of
    ours sees it; what is stored and shown is the printable rest (the content is the same file each time,
    so the later uploads return the first's dataset version)."""
    for filename in ("evil\x1b[31m.jsonl", "invoice\u202egnp.jsonl", "tab\there.jsonl", "bell\x07.jsonl"):
        body, content_type = _multipart(filename, DEMO_ROWS.read_bytes(), purpose="fine-tune")
        response = client.post("/v1/files", body, content_type=content_type, headers=_auth(owner))
        assert response.status_code == 200, response.content[:300]
        stored = response.json()["filename"]
        assert stored.isprintable() and stored.endswith(".jsonl"), repr(stored)
    assert all(d.name.isprintable() for d in Dataset.objects.all())


def test_names_with_control_characters_or_too_long_are_refused(client, owner, artifact_root):
    """The fields that reach us verbatim (a dataset's name, a too-long filename) are refused with 400."""
    for name in ("line\nbreak", "evil\x1b[31m", "invoice\u202egnp", "nul\x00", "x" * 250):
        response = client.post(
            "/api/v1/datasets",
            {
                "file": SimpleUploadedFile("ok.jsonl", DEMO_ROWS.read_bytes()),
                "name": name,
                "task_type": "chat",
            },
            headers=_auth(owner),
        )
        assert response.status_code == 400, (name, response.content)
        assert response.json()["error"]["code"] == "invalid_name" and "characters" in _error_message(response)
    body, content_type = _multipart("y" * 250 + ".jsonl", DEMO_ROWS.read_bytes(), purpose="fine-tune")
    long_file = client.post("/v1/files", body, content_type=content_type, headers=_auth(owner))
    assert long_file.status_code == 400 and "characters" in long_file.json()["error"]["message"]
    assert Dataset.objects.count() == 0


def test_a_filename_with_path_parts_is_only_a_name(client, owner, artifact_root, tmp_path):
    before = _files_outside(tmp_path, artifact_root)
    body, content_type = _multipart("../../../pwned.jsonl", DEMO_ROWS.read_bytes(), purpose="fine-tune")
    response = client.post("/v1/files", body, content_type=content_type, headers=_auth(owner))
    assert response.status_code == 200 and response.json()["filename"] == "pwned.jsonl"
    assert _files_outside(tmp_path, artifact_root) == before
    assert not list(tmp_path.parent.glob("pwned*")) and not Path("/tmp/pwned.jsonl").exists()


def test_import_paths_outside_the_import_root_are_refused(client, owner, artifact_root, settings, tmp_path):
    imports = tmp_path / "imports"
    imports.mkdir()
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(DEMO_ROWS.read_bytes())
    (imports / "link.jsonl").symlink_to(secret)
    (imports / "ok.jsonl").write_bytes(DEMO_ROWS.read_bytes())
    settings.IMPORT_ROOT = imports
    attempts = {
        "../secret.jsonl": "path_outside_import_root",
        str(secret): "path_outside_import_root",
        "sub/../../secret.jsonl": "path_outside_import_root",
        "link.jsonl": "path_outside_import_root",
        "/etc/passwd": "path_outside_import_root",
        "ok.jsonl\x00.txt": ("invalid_path", "invalid_name"),
        "missing.jsonl": "path_not_found",
    }
    for url in ("/api/v1/datasets", "/api/v1/datasets/validate", "/api/v1/datasets/knowledge"):
        for path, code in attempts.items():
            if url.endswith("knowledge") and code == "path_not_found":
                continue
            response = client.post(url, {"path": path, "task_type": "chat"}, headers=_auth(owner))
            assert response.status_code == 400, (url, path, response.content[:300])
            assert response.json()["error"]["code"] in (code if isinstance(code, tuple) else (code,)), (
                url, path, response.json(),
            )  # fmt: skip
    assert Dataset.objects.count() == 0
    ok = client.post("/api/v1/datasets", {"path": "ok.jsonl", "task_type": "chat"}, headers=_auth(owner))
    assert ok.status_code == 201


def test_worker_reported_folders_must_lie_under_the_artifact_root(client, world, artifact_root, tmp_path):
    worker = {"Authorization": f"Bearer {world['job_token']}"}
    base = f"/api/v1/worker/jobs/{world['job_id']}"
    for path in (
        "/etc",
        "../../etc",
        str(artifact_root) + "/../escape",
        "relative/checkpoint-1",
        str(tmp_path),
    ):
        response = client.post(
            f"{base}/checkpoints", {"step": 1, "path": path}, content_type="application/json", headers=worker
        )
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["code"] == "path_outside_job_folder"
    running = client.post(
        f"{base}/status",
        {"status": "running", "worker": "w"},
        content_type="application/json",
        headers=worker,
    )
    assert running.status_code == 200
    final = client.post(
        f"{base}/status",
        {"status": "succeeded", "final_model_path": "/etc"},
        content_type="application/json",
        headers=worker,
    )
    assert final.status_code == 400
    inside = client.post(
        f"{base}/checkpoints", {"step": 1, "path": str(artifact_root / "jobs" / world["job_id"] / "checkpoint-1")},
        content_type="application/json", headers=worker,
    )  # fmt: skip
    assert inside.status_code == 201


def test_export_archives_hold_only_relative_members(
    client, people, world, artifact_root, tmp_path, django_capture_on_commit_callbacks
):
    before = _files_outside(tmp_path, artifact_root)
    owner = _auth(people["owner"])
    base = f"/api/v1/models/{world['model_id']}/versions/{world['version']}"
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            f"{base}/exports", {"merge": False}, content_type="application/json", headers=owner
        )
    assert created.status_code == 201, created.content
    export_id = created.json()["id"] if "id" in created.json() else created.json()["export_id"]
    archive = client.get(f"{base}/exports/{export_id}/archive", headers=owner)
    assert archive.status_code == 200
    data = b"".join(archive.streaming_content) if archive.streaming else archive.content
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert members
    for member in members:
        assert not os.path.isabs(member.name) and ".." not in Path(member.name).parts, member.name
        assert not member.issym() and not member.islnk(), member.name
    # Another export id in the URL (a path part) is only ever a number looked up in the database.
    assert client.get(f"{base}/exports/..%2F..%2Fetc/archive", headers=owner).status_code == 404
    assert _files_outside(tmp_path, artifact_root) == before
