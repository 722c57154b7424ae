"""A venv that holds only the client package (`pip install ./client`), built once and reused while the
client's files are unchanged: /tmp/t4dm-client-venv-<hash of client/>."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"


def _client_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in CLIENT.rglob("*") if p.is_file() and "egg-info" not in str(p)):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or "build" in path.relative_to(CLIENT).parts:
            continue
        digest.update(str(path.relative_to(CLIENT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _build(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)  # a build that was cut short
    # A plain venv: no --system-site-packages, so nothing of the server's environment leaks in. Built
    # in place (a venv's scripts name its interpreter by absolute path: it cannot be moved afterwards).
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    # Installed from a copy: pip leaves build/ and *.egg-info beside the sources otherwise.
    source = target / "src"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"pip install ./client failed:\n{done.stdout}\n{done.stderr}"
    shutil.rmtree(source)
    (target / ".complete").touch()


@dataclass
class ClientVenv:
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def t4dm(self) -> str:
        return str(self.path / "bin" / "t4dm")


@pytest.fixture(scope="module")
def client_venv() -> ClientVenv:
    target = Path(f"/tmp/t4dm-client-venv-{_client_hash()}")
    with open("/tmp/t4dm-client-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (the suite and a helper may both run)
        if not (target / ".complete").exists():
            _build(target)
    return ClientVenv(target)


def client_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing of the server's: no T4DM_/DJANGO_ variables, a home of its own."""
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("T4DM_", "DJANGO_", "VIRTUAL_ENV", "PYTHON"))
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**keep, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **extra}
