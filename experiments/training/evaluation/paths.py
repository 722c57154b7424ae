"""What kind of model folder a path is. Plain pathlib: the platform checks requests with it."""

from __future__ import annotations

from pathlib import Path


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def check_model_path(model_path: str) -> None:
    """ValueError unless ``model_path`` is a model folder (adapter or full) or looks like a hub id.

    The engine's last check on the worker. Which folder a user may name is decided before, on the
    server, by experiments.model_refs (allow-listed roots, the sharing rule); here one message covers
    a missing folder and a folder without a model, so the answer does not tell which exists."""
    path = Path(model_path)
    if path.is_absolute() or model_path.startswith("."):
        if not (is_adapter(path) or (path / "config.json").is_file()):
            raise ValueError(
                f"model_path: {model_path} is not a model folder (it does not exist, or holds neither "
                "adapter_config.json nor config.json)"
            )
