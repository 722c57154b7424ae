"""A job that asks for several GPUs runs as several data-parallel processes under torchrun: here two CPU
processes (gloo) on the tiny model, through the same launcher the worker uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.training.worker import refusal_reason, train_distributed


def test_two_processes_train_one_job_and_rank_zero_reports(make_spec, tmp_path: Path) -> None:
    # Micro-batches of at most 128 tokens: each rank cuts its steps into several micro-batches and
    # reduces gradients once per step (before that change this run also passed: it does not prove it).
    spec = make_spec(
        hyperparameters={
            "device": "cpu", "max_steps": 6, "gradient_accumulation": 2, "logging_steps": 1,
            "max_seq_length": 128, "micro_batch_tokens": 128,
        },
        checkpointing={"save_steps": 3, "save_total_limit": 2, "best_only": False},
    )  # fmt: skip

    result = train_distributed(spec, 2, server_url=None, token=None, timeout=300)

    assert result["processes"] == 2
    assert (result["global_step"], result["stopped"]) == (6, "completed")
    assert result["final_loss"] is not None
    final = Path(result["final_model_path"])
    assert (final / "adapter_model.safetensors").is_file()
    # one set of checkpoints, written once (rank 0), rotation applied
    checkpoints = sorted(p.name for p in Path(spec["output_dir"]).glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]
    assert {p.name for p in (Path(spec["output_dir"]) / "checkpoint-6").glob("rng_state_*")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }
    state = json.loads((Path(spec["output_dir"]) / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


@pytest.mark.parametrize("approach", ["full", "prompt_tuning"])
def test_every_trainable_parameter_is_reduced_for_other_approaches(make_spec, approach) -> None:
    # DDP runs without searching for unused parameters: a parameter that got no gradient in a step
    # would stop the run with "Expected to have finished reduction". Full and prompt tuning train
    # other parameters than LoRA's adapters (all weights; the virtual-token embedding).
    spec = make_spec(approach=approach, hyperparameters={"device": "cpu", "max_steps": 3, "logging_steps": 1})
    result = train_distributed(spec, 2, server_url=None, token=None, timeout=300)
    assert (result["processes"], result["global_step"], result["stopped"]) == (2, 3, "completed")
    assert result["tokens_per_sec"] and result["final_loss"] is not None


def test_a_failed_launch_says_why(make_spec) -> None:
    spec = make_spec(hyperparameters={"device": "cpu", "lora_r": 0})
    try:
        train_distributed(spec, 2, server_url=None, token=None)
    except RuntimeError as exc:
        assert "2-process run failed" in str(exc) and "lora_r" in str(exc)
    else:
        raise AssertionError("the launch should have failed")


def test_a_worker_refuses_what_its_gpu_cannot_hold(monkeypatch) -> None:
    spec = {"hyperparameters": {}, "resources": {"gpu_memory_mb": 40_000, "gpus": 1}}
    h100 = {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "gpu_memory_total_mb": 81_559}
    l4 = {"gpu_name": "NVIDIA L4", "gpu_count": 1, "gpu_memory_total_mb": 23_034}
    cpu = {"gpu_name": "", "gpu_count": 0, "gpu_memory_total_mb": None}

    assert refusal_reason(spec, h100) is None
    assert refusal_reason(spec, l4) == (
        "needs 40,000 MiB of GPU memory (estimate); this worker offers 23,034 MiB on NVIDIA L4"
    )
    assert refusal_reason(spec, cpu) is None  # a CPU worker runs what it is sent (slowly)
    assert refusal_reason({**spec, "resources": {"gpus": 2}}, h100) == "needs 2 GPUs; this worker has 1"
    monkeypatch.setenv("T4DM_WORKER_GPU_MEMORY_MB", "20000")  # a shared GPU or a MIG slice
    assert "offers 20,000 MiB" in refusal_reason(spec, h100)
