"""Sharded training (FSDP2, experiments/training/sharding.py) on CPU: two gloo processes under torchrun
on the tiny model, through the launcher the worker uses. Same loss as one process, exact resume from
a sharded checkpoint, a cancel heard by rank 0 stops every rank, the final model (or adapter) loads
with from_pretrained; and the token balance that deals each step's samples to the ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from safetensors.torch import load_file
from torch.utils.data import BatchSampler

from experiments.training.engine import train
from experiments.training.reporter import NullReporter
from experiments.training.sharding import TokenBalancedSampler, deal_by_tokens, uses_fsdp
from experiments.training.spec import SpecError, TrainingSpec
from experiments.training.worker import train_distributed

REPO = Path(__file__).resolve().parents[2]


def _losses(checkpoint: Path) -> list[float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _fsdp_spec(
    model_dir: Path, *, approach: str = "full", output: str, per_rank: int = 2, gpus: int = 2, **extra
) -> dict:
    from tests.training.conftest import KNOWLEDGE_CHAT

    return {
        "job_id": "job-fsdp",
        "model_base": str(model_dir),
        "approach": approach,
        "task_type": "chat",
        "hyperparameters": {
            "learning_rate": 3e-3, "batch_size": per_rank, "gradient_accumulation": 1, "max_steps": 4,
            "lora_dropout": 0.0, "seed": 0, "logging_steps": 1, "device": "cpu", "sharding": "fsdp",
            "gpus": gpus, **extra.pop("hyperparameters", {}),
        },
        "early_stopping": None,
        "checkpointing": {"save_steps": 2, "save_total_limit": 3, "best_only": False},
        "dataset": {"train": str(KNOWLEDGE_CHAT), "validation": None},
        "output_dir": output,
        "resume_from_checkpoint": None,
        **extra,
    }  # fmt: skip


@pytest.fixture(scope="module")
def sharded_full_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One 2-process FSDP2 full fine-tune (4 steps, checkpoints at 2 and 4), shared by the tests."""
    spec = _fsdp_spec(tiny_model_dir, output=str(tmp_path_factory.mktemp("fsdp") / "job"))
    return spec, train_distributed(spec, 2, server_url=None, token=None, timeout=300)


def test_a_sharded_full_fine_tune_writes_sharded_checkpoints_and_a_loadable_model(sharded_full_run) -> None:
    from transformers import AutoModelForCausalLM

    spec, result = sharded_full_run
    assert (result["processes"], result["sharding"]) == (2, "fsdp")
    assert (result["global_step"], result["stopped"]) == (4, "completed")
    checkpoint = Path(spec["output_dir"]) / "checkpoint-4"
    # each rank's shard of the weights and of the optimizer state (torch.distributed.checkpoint)
    for folder in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert {p.name for p in (checkpoint / folder).glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    assert not (checkpoint / "model.safetensors").exists()
    # the final model is gathered into one from_pretrained folder
    model = AutoModelForCausalLM.from_pretrained(result["final_model_path"])
    assert sum(p.numel() for p in model.parameters()) == result["total_parameters"]


def test_two_sharded_processes_train_as_one_process_does(
    sharded_full_run, tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec, _ = sharded_full_run
    # One process with both ranks' samples per step (the token-balanced order gives it the same ones).
    single = _fsdp_spec(tiny_model_dir, output=str(tmp_path / "single"), per_rank=4, gpus=1)
    result = train(single, NullReporter())
    assert result["sharding"] == "none"
    sharded = _losses(Path(spec["output_dir"]) / "checkpoint-4")
    one = _losses(Path(single["output_dir"]) / "checkpoint-4")
    assert len(sharded) == len(one) == 4
    # fp32 on CPU; the sums are reduced in another order across two processes
    assert sharded == pytest.approx(one, rel=1e-4), (sharded, one)


def test_a_resume_from_a_sharded_checkpoint_ends_where_the_uninterrupted_run_did(
    sharded_full_run, tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec, result = sharded_full_run
    resumed_spec = _fsdp_spec(
        tiny_model_dir,
        output=str(tmp_path / "resumed"),
        resume_from_checkpoint=str(Path(spec["output_dir"]) / "checkpoint-2"),
    )
    resumed = train_distributed(resumed_spec, 2, server_url=None, token=None, timeout=300)
    assert (resumed["global_step"], resumed["stopped"]) == (4, "completed")
    assert _losses(Path(resumed_spec["output_dir"]) / "checkpoint-4") == pytest.approx(
        _losses(Path(spec["output_dir"]) / "checkpoint-4"), rel=1e-6
    )
    straight = load_file(Path(result["final_model_path"]) / "model.safetensors")
    again = load_file(Path(resumed["final_model_path"]) / "model.safetensors")
    assert straight.keys() == again.keys()
    for name, tensor in straight.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=1e-6, msg=name)


CANCEL_ENTRY = """
import json, os, sys
from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter, NullReporter
spec = json.loads(open(sys.argv[1]).read())
# Only rank 0 hears the cancel (as only rank 0 reports to the platform), after step 2.
reporter = MemoryReporter(stop_after_step=2) if os.environ["RANK"] == "0" else NullReporter()
result = train(spec, reporter)
if os.environ["RANK"] == "0":
    open(sys.argv[2], "w").write(json.dumps(result))
"""


def test_a_cancel_heard_by_rank_zero_stops_every_sharded_rank(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = _fsdp_spec(
        tiny_model_dir, approach="lora", output=str(tmp_path / "job"), hyperparameters={"max_steps": 8}
    )
    spec["checkpointing"]["save_steps"] = 100
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "entry.py").write_text(CANCEL_ENTRY)
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            str(tmp_path / "entry.py"), str(tmp_path / "spec.json"), str(tmp_path / "result.json"),
        ],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["stopped"], result["global_step"], result["sharding"]) == ("cancelled", 2, "fsdp")
    # a cancelled job keeps a (sharded) checkpoint to resume from, and its adapter loads
    assert (tmp_path / "job" / "checkpoint-2" / "pytorch_model_fsdp_0").is_dir()
    base = AutoModelForCausalLM.from_pretrained(spec["model_base"])
    model = PeftModel.from_pretrained(base, result["final_model_path"])
    lora = [name for name, _ in model.named_parameters() if "lora_" in name]
    assert lora and len(lora) == len(
        load_file(Path(result["final_model_path"]) / "adapter_model.safetensors")
    )


# --- without processes --------------------------------------------------------------------------


def test_token_balance_evens_out_each_steps_tokens() -> None:
    from itertools import combinations

    lengths = [300, 20, 280, 40, 25, 310, 30, 35, 500, 15, 45, 290]
    bins = deal_by_tokens(lengths, 2)
    assert sorted(p for b in bins for p in b) == list(range(12)) and [len(b) for b in bins] == [6, 6]
    worst = max(sum(lengths[p] for p in b) for b in bins)
    arrival = max(sum(lengths[:6]), sum(lengths[6:]))  # 975 and 915 tokens
    best = min(
        max(sum(lengths[p] for p in half), sum(lengths) - sum(lengths[p] for p in half))
        for half in combinations(range(12), 6)
    )
    # the busiest rank waits less than in arrival order, within 2 % of the best split (955 vs 945)
    assert worst < arrival and worst <= best * 1.02, (worst, arrival, best)


def test_each_rank_receives_its_balanced_share(tiny_model_dir: Path) -> None:
    from experiments.training.tiny_model import CORPUS_DIR

    lines = (CORPUS_DIR / "knowledge_chat.jsonl").read_text().splitlines()
    lengths = [len(line) for line in lines if line.strip()]
    per_rank, ranks = 2, 2
    balanced = TokenBalancedSampler(lengths, ranks=ranks, per_rank=per_rank, seed=0)
    one = TokenBalancedSampler(lengths, ranks=1, per_rank=per_rank * ranks, seed=0)
    # accelerate hands the DataLoader's batches to the ranks in turn (BatchSamplerShard)
    shards = [
        list(BatchSamplerShard(BatchSampler(balanced, per_rank, False), ranks, rank, split_batches=False))
        for rank in range(ranks)
    ]
    steps = list(BatchSampler(one, per_rank * ranks, False))
    worst_balanced = worst_plain = 0
    for index, step in enumerate(steps[: len(shards[0])]):
        parts = [shards[rank][index] for rank in range(ranks)]
        assert sorted(sum(parts, [])) == sorted(step)  # the same samples as one process's step
        if len(step) == per_rank * ranks:
            worst_balanced += max(sum(lengths[i] for i in part) for part in parts)
            worst_plain += max(
                sum(lengths[i] for i in step[r * per_rank : (r + 1) * per_rank]) for r in range(ranks)
            )
    assert worst_balanced < worst_plain


def test_the_spec_names_the_sharding_modes(make_spec) -> None:
    assert TrainingSpec.from_dict(make_spec()).hyperparameters.sharding == "auto"
    with pytest.raises(SpecError, match="hyperparameters.sharding"):
        TrainingSpec.from_dict(make_spec(hyperparameters={"sharding": "zero3"}))
    assert uses_fsdp("fsdp", {}, processes=2)
    assert not uses_fsdp("fsdp", {}, processes=1)
    assert not uses_fsdp("auto", {}, processes=2)  # data parallel unless the plan shards
    assert uses_fsdp("auto", {"sharding": "fsdp"}, processes=2)
    assert not uses_fsdp("none", {"sharding": "fsdp"}, processes=2)
    # "auto" also shards when one of this machine's GPUs does not hold the job (sharding.fits_one_gpu)
    assert uses_fsdp("auto", {}, processes=2, one_gpu_holds=False)
    assert not uses_fsdp("none", {}, processes=2, one_gpu_holds=False)


@pytest.mark.parametrize("model", ["llama-3-8b", "llama-3-70b"])
@pytest.mark.parametrize("approach", ["full", "lora"])
def test_a_job_no_gpu_holds_gets_the_fewest_sharded_gpus_that_do(model, approach) -> None:
    from experiments.training import resources
    from experiments.training.engine import DEFAULT_HYPERPARAMETERS

    shape = resources.model_shape(model)
    hp = {**DEFAULT_HYPERPARAMETERS, "full_recipe": "fp32_master"}
    estimate = resources.estimate(shape=shape, approach=approach, hyperparameters=hp, train_tokens=10**6)
    plan = estimate["plan"]
    if plan["fits"]:
        return
    sharded = plan["sharded"]
    if sharded is None:  # 70B with fp32 masters: 16 bytes/param over 8 GPUs is still ~140 GB each
        assert "more GPUs: even 8 GPUs with sharded training (FSDP2) do not hold it" in plan["changes"]
        per_gpu = sum(resources.sharded_breakdown(shape, approach, hp, 8).values())
        assert per_gpu > max(g[1] for g in resources.GPUS) * 2**30 * resources.PLAN_HEADROOM
        return
    assert sharded["sharding"] == "fsdp"
    gib = dict((g[0], g[1]) for g in resources.GPUS)[sharded["gpu"]]
    assert sharded["per_gpu_mib"] * 2**20 <= gib * 2**30 * resources.PLAN_HEADROOM
    assert any(
        c.startswith(f"more GPUs with sharded training (gpus: {sharded['gpu_count']}")
        for c in plan["changes"]
    )
    fewer = [n for n in resources.SHARD_COUNTS if n < sharded["gpu_count"]]
    for count in fewer:  # no smaller count holds it on any known GPU
        for _, variant in resources.configurations(approach, hp):
            per_gpu = sum(resources.sharded_breakdown(shape, approach, variant, count).values())
            assert per_gpu > max(g[1] for g in resources.GPUS) * 2**30 * resources.PLAN_HEADROOM
