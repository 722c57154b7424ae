"""Where the CLI finds its server and token: flags, then T4DM_SERVER_URL / T4DM_API_TOKEN, then the
file `t4dm login` writes ($T4DM_CONFIG, else $XDG_CONFIG_HOME/t4dm/config.json, else
~/.config/t4dm/config.json). The file holds a token, so it is created readable by its owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path


def config_path() -> Path:
    if os.environ.get("T4DM_CONFIG"):
        return Path(os.environ["T4DM_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "t4dm" / "config.json"


def load() -> dict:
    path = config_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SystemExit(f"t4dm: cannot read {path}: {exc}") from exc


def save(*, server_url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 from the start (not chmod-ed afterwards): the token is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"server_url": server_url, "token": token}, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC
    return path
