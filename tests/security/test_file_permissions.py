"""Issue 17 item 3: data files are private to the service user.

A fresh embedded platform (its own T4DM_DATA_DIR, the defaults otherwise) creates its SQLite database,
secret key, broker messages (they carry job tokens), dataset files and job artifacts readable by the
service user only: files 0600, folders 0700. Real processes (manage.py, a script using the settings),
real files on disk.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import django
django.setup()
from django.contrib.auth import get_user_model
from datasets_app.services import dataset_prepare
from experiments.services import job_start, training_config_create
from tests.conftest import DEMO_ROWS

owner = get_user_model().objects.create_user(username="perm", password="pw-perm-123")
version = dataset_prepare(owner=owner, name="private", content=DEMO_ROWS.read_bytes(), task_type="chat")
config = training_config_create(owner=owner, dataset_id=version.dataset.public_id, model_base="t4dm-tiny")
job_start(owner=owner, config=config)  # its message, with the job's token, goes to the broker
print(version.path)
"""


def _clean_env(data_dir: Path, tiny_model_dir: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("T4DM_", "DJANGO_", "DATABASE_", "CELERY_"))
    }
    return {
        **env,
        "T4DM_DATA_DIR": str(data_dir),
        "T4DM_TINY_MODEL_DIR": str(tiny_model_dir),
        "DJANGO_SETTINGS_MODULE": "t4dm_site.settings",
        "PYTHONPATH": str(REPO),
    }


@pytest.mark.parametrize("umask", [0o022, 0o002])  # what a login shell or a service manager usually has
def test_an_embedded_platform_keeps_its_data_files_private(tmp_path, tiny_model_dir, umask):
    data_dir = tmp_path / "var"
    env = _clean_env(data_dir, tiny_model_dir)

    def run(*command: str) -> str:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
            preexec_fn=lambda: os.umask(umask),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run(sys.executable, "manage.py", "migrate", "-v", "0")
    dataset_folder = Path(run(sys.executable, "-c", SCRIPT).strip().splitlines()[-1])

    files = [p for p in data_dir.rglob("*") if p.is_file()]
    folders = [p for p in data_dir.rglob("*") if p.is_dir()]
    names = {p.relative_to(data_dir).as_posix() for p in files}
    assert {"db.sqlite3", "secret_key"} <= names, names
    messages = [p for p in files if p.relative_to(data_dir).parts[0] == "broker"]
    assert messages and any(b"t4job_" in p.read_bytes() for p in messages), names
    assert [p for p in dataset_folder.iterdir() if p.suffix == ".parquet"]
    readable = [
        f"{p.relative_to(data_dir)} {stat.filemode(p.stat().st_mode)}"
        for p in files
        if p.stat().st_mode & 0o077
    ]
    open_folders = [
        f"{p.relative_to(data_dir)} {stat.filemode(p.stat().st_mode)}"
        for p in folders
        if p.stat().st_mode & 0o077
    ]
    assert not readable, "files others can read or write:\n" + "\n".join(readable)
    assert not open_folders, "folders others can enter:\n" + "\n".join(open_folders)
