"""Sharded training (FSDP2) and token-balanced batches for jobs that run as several processes.

A job with ``gpus: N`` runs as N processes under torchrun (experiments/training/worker.py); with
``nodes: M`` as M × N processes on M workers (experiments/training/rendezvous.py), all one world here. Plain data
parallel (DDP) keeps a whole copy of the weights, gradients and optimizer state on every GPU; with
``hyperparameters.sharding`` "fsdp" (or "auto" when the resource plan says one GPU does not hold the
job: ``resources.sharding == "fsdp"``) each decoder layer and the root module are wrapped with
``torch.distributed.fsdp.fully_shard`` (FSDP2, through the Trainer's accelerate integration), so each
process keeps 1/N of them.

Checkpoints: each rank writes its shard with torch.distributed.checkpoint (``pytorch_model_fsdp_0/``,
``optimizer_0/`` in ``checkpoint-N``): a resume loads them back on the same number of processes. The
final model (or adapter) is gathered to rank 0 and saved as a plain ``from_pretrained`` folder.

Token balance: each optimizer step's samples of all ranks are dealt out so that every rank gets about
the same number of tokens (longest first to the rank with the fewest), instead of each rank waiting
for whichever drew the longest samples. Under FSDP every forward and backward is a collective, so the
ranks also agree on the number of micro-batches per step (``agree_micro_batches``).

No Django here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def uses_fsdp(
    sharding: str,
    resources: dict[str, Any] | None,
    processes: int | None = None,
    *,
    one_gpu_holds: bool = True,
) -> bool:
    """Whether this run shards with FSDP2 (only with several processes): "fsdp" asks for it; "auto"
    shards when the plan says so (resources' ``sharding``) or when one of this machine's GPUs does not
    hold the job (``one_gpu_holds``, see ``fits_one_gpu``); "none" never does."""
    processes = world_size() if processes is None else processes
    if processes < 2 or sharding == "none":
        return False
    return sharding == "fsdp" or (resources or {}).get("sharding") == "fsdp" or not one_gpu_holds


def fits_one_gpu(spec: Any) -> bool:
    """Whether one of this machine's GPUs holds the job in any recipe the engine would pick (the
    estimate of experiments/training/resources.py against the GPU's memory); True off GPU or when the
    model's shape is unknown (nothing to decide with)."""
    from experiments.training import resources

    if not torch.cuda.is_available() or spec.hyperparameters.device == "cpu":
        return True
    shape = resources.model_shape(spec.model_base, spec.task_type)
    if shape is None:
        return True
    gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    hp = spec.to_dict()["hyperparameters"]
    return any(
        resources._fits(
            sum(resources.memory_breakdown(shape, spec.approach, variant, task_type=spec.task_type).values()),
            gib,
        )
        for _, variant in resources.configurations(spec.approach, hp)
    )


def balances_tokens(sharding: str, gpus: int) -> bool:
    """Token-balanced sample order: for every multi-process job, and for a one-process run of a job
    that asks for "fsdp" (the same samples per step as its sharded run: the reference it is compared
    with)."""
    return world_size() > 1 or gpus > 1 or sharding == "fsdp"


def decoder_layer_classes(model: Any) -> list[str]:
    """Names of the modules FSDP2 wraps one by one (the decoder layers), from the base model's
    ``_no_split_modules`` (peft wrappers are looked through)."""
    names: list[str] = []
    for module in model.modules():
        names = list(getattr(module, "_no_split_modules", None) or [])
        if names:
            break
    present = {type(module).__name__ for module in model.modules()}
    return [name for name in names if name in present]


def fsdp_training_arguments(model: Any) -> dict[str, Any]:
    """TrainingArguments keywords for FSDP2 (accelerate's fully_shard integration): every decoder
    layer sharded, parameters resharded after forward, sharded (DCP) checkpoints."""
    layers = decoder_layer_classes(model)
    config: dict[str, Any] = {
        "version": 2,
        "reshard_after_forward": True,
        "state_dict_type": "SHARDED_STATE_DICT",
        "activation_checkpointing": False,
    }
    if layers:
        config["transformer_layer_cls_to_wrap"] = layers
    return {"fsdp": "full_shard auto_wrap", "fsdp_config": config}


# --- token balance -----------------------------------------------------------------------------


def deal_by_tokens(lengths: Sequence[int], ranks: int) -> list[list[int]]:
    """Deal positions 0..len(lengths)-1 to ``ranks`` bins of equal sample count (the collator and the
    Trainer expect the same batch size everywhere) with token totals as even as possible: longest
    first, each to the open bin with the fewest tokens (LPT). Each bin keeps ascending positions."""
    per_rank = len(lengths) // ranks
    bins: list[list[int]] = [[] for _ in range(ranks)]
    totals = [0] * ranks
    for position in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        open_bins = [r for r in range(ranks) if len(bins[r]) < per_rank] or list(range(ranks))
        target = min(open_bins, key=lambda r: (totals[r], r))
        bins[target].append(position)
        totals[target] += lengths[position]
    return [sorted(b) for b in bins]


class TokenBalancedSampler(torch.utils.data.Sampler[int]):
    """A seeded shuffle (a new order each epoch) cut into optimizer steps of ``ranks × per_rank``
    samples; within a step the samples are dealt by tokens (``deal_by_tokens``) and emitted rank by
    rank. The DataLoader batches ``per_rank`` at a time and accelerate hands batch i to rank
    i mod ``ranks``, so each rank receives its bin. One process (``ranks`` 1) sees the same samples
    per step as ``ranks`` processes of ``per_rank / ranks`` each would together."""

    def __init__(self, lengths: Sequence[int], *, ranks: int, per_rank: int, seed: int) -> None:
        self.lengths = [int(n) for n in lengths]
        self.ranks, self.per_rank, self.seed = max(1, ranks), max(1, per_rank), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        step = self.ranks * self.per_rank
        for begin in range(0, len(order), step):
            chunk = order[begin : begin + step]
            if len(chunk) < step or self.ranks == 1:
                yield from chunk
                continue
            for bin_ in deal_by_tokens([self.lengths[i] for i in chunk], self.ranks):
                yield from (chunk[p] for p in bin_)


def dataset_lengths(dataset: Any) -> list[int]:
    """Token count per sample of a tokenized dataset (its input_ids)."""
    return [len(ids) for ids in dataset["input_ids"]]


# --- micro-batches under FSDP ------------------------------------------------------------------


def max_over_ranks(value: int) -> int:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def idle_micro_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A micro-batch that trains nothing (its first token, no target): a rank with fewer micro-batches
    than another runs these so that every rank joins every FSDP collective."""
    part: dict[str, Any] = {}
    for key, value in batch.items():
        if (
            torch.is_tensor(value)
            and value.dim() >= 2
            and key in ("input_ids", "labels", "position_ids", "seq_idx")
        ):
            part[key] = value[:, :1].clone()
        elif key in ("cu_seq_lens_q", "cu_seq_lens_k") and torch.is_tensor(value):
            part[key] = torch.tensor([0, 1], dtype=value.dtype)
        elif key in ("max_length_q", "max_length_k"):
            part[key] = 1
        else:
            part[key] = value
    if "labels" in part:
        part["labels"] = torch.full_like(part["labels"], -100)
    return part


def agree_micro_batches(micro_batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pad this rank's micro-batches to the most any rank has this step (with idle ones)."""
    most = max_over_ranks(len(micro_batches))
    return micro_batches + [idle_micro_batch(micro_batches[-1]) for _ in range(most - len(micro_batches))]


def enable_fsdp_off_gpu(trainer: Any) -> None:
    """accelerate turns its FSDP plugin on only for GPU (and other accelerator) process groups; a CPU
    run (gloo: CPU workers, the tests) gets the same plugin after the Trainer is built, so that the
    Trainer wraps, saves and loads the model exactly as on GPUs (fully_shard works on CPU tensors)."""
    if trainer.is_fsdp_enabled or trainer.args.fsdp_plugin_args is None:
        return
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    state.distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


def save_gathered(trainer: Any, output_dir: str) -> None:
    """Checkpoints stay sharded (each rank its part, for resume); the final model is gathered: every
    rank joins the all-gather, rank 0 writes one from_pretrained folder (full weights, or peft's
    adapter) from plain CPU tensors."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    model = trainer.model_wrapped if trainer.model_wrapped is not None else trainer.model
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.args.should_save:
        from experiments.training.fencing import fence_for

        fence = fence_for(trainer.args.output_dir)
        if fence is not None:
            fence.check(ask=True)  # as AtomicCheckpointTrainer.save_model: not from a superseded attempt
        trainer.accelerator.unwrap_model(model).save_pretrained(output_dir, state_dict=state)
        trainer.processing_class.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()
