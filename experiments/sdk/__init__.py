"""The T4DM Python SDK now lives in the client package (client/, `pip install ./client`, import `t4dm`);
this re-export keeps `from experiments.sdk import T4DM, T4DMError, T4DMCallback` working."""

from __future__ import annotations

from t4dm import T4DM, T4DMError

__all__ = ["T4DM", "T4DMError", "T4DMCallback"]


def __getattr__(name: str):
    # The callback needs transformers; importing the client alone should not.
    if name == "T4DMCallback":
        from t4dm.callback import T4DMCallback

        return T4DMCallback
    raise AttributeError(name)
