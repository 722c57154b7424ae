"""The T4DM Python SDK: the seed's operations over the REST API, and `T4DMCallback` for HF Trainer.

No Django here (a test checks it): the SDK runs anywhere that can reach the server over HTTP.

    from experiments.sdk import T4DM
    t4dm = T4DM("http://127.0.0.1:8000", token="t4dm_...")   # or T4DM_SERVER_URL / T4DM_API_TOKEN
    ds = t4dm.prepare_dataset("train.jsonl", task_type="chat")
    cfg = t4dm.configure_training("t4dm-tiny", ds["dataset_id"])
    job = t4dm.start_training(cfg["config_id"])
"""

from __future__ import annotations

from experiments.sdk.client import T4DM, T4DMError

__all__ = ["T4DM", "T4DMError", "T4DMCallback"]


def __getattr__(name: str):
    # The callback needs transformers; importing the client alone should not.
    if name == "T4DMCallback":
        from experiments.sdk.callback import T4DMCallback

        return T4DMCallback
    raise AttributeError(name)
