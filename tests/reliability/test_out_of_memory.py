"""An oversized batch on a worker with too little memory (a real limit: RLIMIT_AS on the worker
process): the job fails with a message that says what to change, not a stack trace."""

from __future__ import annotations

import json
import random
import resource

import pytest

from tests.reliability.conftest import TERMINAL

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

LIMIT = 4 * 2**30  # the worker imports torch/transformers in ~2.3 GiB of address space


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _long_rows(n: int) -> bytes:
    words = "the model learns from data and the loss goes down when the batch fits in memory".split()
    rnd = random.Random(0)
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": " ".join(rnd.choice(words) for _ in range(600))},
            ]
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_an_oversized_batch_fails_with_advice_not_a_stack_trace(fault_platform):
    platform = fault_platform
    platform.start_web()
    # glibc's per-thread arenas reserve address space too; two keep the limit about real allocations.
    platform.start_worker(env={"MALLOC_ARENA_MAX": "2"}, preexec_fn=_limit_memory)
    with platform.http() as http:
        dataset = http.post(
            "/datasets", files={"file": ("long.jsonl", _long_rows(64))}, data={"task_type": "chat"}
        )
        assert dataset.status_code == 201, dataset.text
        config = http.post(
            "/configs",
            json={
                "model_base": "t4dm-tiny",
                "dataset_id": dataset.json()["dataset_id"],
                # 64 x 512 tokens in one batch: the attention scores alone need ~1 GiB per layer.
                "hyperparams": {"batch_size": 64, "max_seq_length": 512, "max_steps": 2},
            },
        )
        assert config.status_code == 201, config.text
        job_id = http.post("/jobs", json={"config_id": config.json()["config_id"]}).json()["job_id"]
    row = platform.wait_for(job_id, lambda r: r["status"] in TERMINAL, timeout=300, what="the end")
    assert row["status"] == "failed", row
    error = row["error"]
    print("\n" + error)
    assert error.startswith("out of memory on the CPU"), error
    for advice in (
        "smaller batch_size (now 64",
        "gradient_checkpointing: true",
        "qlora",
        "max_seq_length (now 512)",
    ):
        assert advice in error
    assert "Traceback" not in error and "alloc_cpu.cpp" not in error
    with platform.http() as http:
        assert http.get(f"/jobs/{job_id}").json()["error"] == error
    # The worker survived its job's OOM and still heartbeats.
    assert platform.worker.poll() is None
