"""The T4DM client: the Python SDK (the seed's operations over the REST API), `T4DMCallback` for HF
Trainer, and the `t4dm` command line (t4dm.cli). No Django, no torch: it runs anywhere that can reach
the server over HTTP.

    from t4dm import T4DM
    t4dm = T4DM("http://127.0.0.1:8000", token="t4dm_...")   # or T4DM_SERVER_URL / T4DM_API_TOKEN
    ds = t4dm.prepare_dataset("train.jsonl", task_type="chat")
    cfg = t4dm.configure_training("t4dm-tiny", ds["dataset_id"])
    job = t4dm.start_training(cfg["config_id"])
"""

from __future__ import annotations

from t4dm.client import T4DM, T4DMError

__all__ = ["T4DM", "T4DMError", "T4DMCallback"]


def __getattr__(name: str):
    # The callback needs transformers (the `callback` extra); importing the client alone should not.
    if name == "T4DMCallback":
        from t4dm.callback import T4DMCallback

        return T4DMCallback
    raise AttributeError(name)
