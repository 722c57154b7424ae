"""Training throughput on one GPU: plain HF Trainer + peft (padded batches) against T4DM's engine, in one
process, on the same model shape, data and effective batch; then the memory estimator against measured
peaks.

    python benchmarks/train_throughput.py                       # throughput table (3 cases)
    python benchmarks/train_throughput.py --estimator           # estimate vs measured peak, 6 configs
    python benchmarks/train_throughput.py --cases tiny-lora --steps 6   # CPU smoke run
    python benchmarks/train_throughput.py --cases 8b-full-lean --rounds 2  # 8B full: lean vs plain HF
    python benchmarks/train_throughput.py --cases tiny-full-lean --steps 4 --warmup 1  # its CPU smoke run

Data: random-init models with the real shapes (no download), the tiny tokenizer, completion rows whose
token lengths follow a lognormal with mean ≈350 capped at 1024 (instruction-like). The seed's default
LoRA config: r16, α32, dropout 0.1 on q_proj/v_proj; batch 4 × gradient accumulation 4; bf16; lr 2e-5.

Baseline ("plain HF"): AutoModelForCausalLM (sdpa) + peft + Trainer with DataCollatorForSeq2Seq
padding each batch to its longest row, default optimizer, logging every step.
Full-lean cases ("*-full-lean"): plain HF Trainer with its own memory-saving options, the model
loaded in bf16 (pure bf16 weights and moments), gradient checkpointing, and either fused AdamW
(``hf-bf16``) or ``optim="adamw_bnb_8bit"`` (``hf-8bit``), against the engine with
``full_recipe: bf16_kahan`` (bf16 weights + Kahan-compensated AdamW, experiments/training/optim.py;
``--full-recipe`` picks another, e.g. ``auto``: what a job gets on this GPU),
all in one process, alternating for ``--rounds`` rounds (each run is reported; the table takes each
variant's best round).
T4DM: ``experiments.training.engine.train`` with its defaults (padding-free batches with per-document
attention, chunked or fused linear+CE, fused AdamW, Liger kernels where installed).

Real tokens/s counts only non-padding tokens, timed from the end of the warm-up steps to the end of
the run (the GPU synchronised at both ends). MFU = real tokens/s × training FLOPs per token / peak
bf16 dense FLOP/s (989 TFLOP/s for H100 SXM and H200), with training FLOPs per token
= 6·N (full) or 4·N + 6·N_trainable (LoRA/QLoRA: no weight gradients for the frozen base), N the
parameters in matrix multiplies (all but the input embedding), plus causal attention
3 · 2·L·d·l per token for a row of l tokens (forward QKᵀ and AV over l/2 keys on average, backward 2×).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from experiments.training.benchmark import prepare_benchmark  # noqa: E402
from experiments.training.resources import memory_breakdown, model_shape  # noqa: E402

TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "tie_word_embeddings": False,
}
CASES = {
    "8b-lora": ("llama-3-8b", "lora"),
    "1b-full": ("llama-3.2-1b", "full"),
    "8b-qlora": ("llama-3-8b", "qlora"),
    "tiny-lora": ("tiny", "lora"),
    "tiny-full": ("tiny", "full"),
    "8b-full-lean": ("llama-3-8b", "full"),
    "tiny-full-lean": ("tiny", "full"),
}
# Plain HF Trainer's own memory-saving options for a full fine-tune (the issue 20 comparison).
HF_LEAN_VARIANTS = {
    "hf-bf16": {"bf16_weights": True, "optim": "adamw_torch_fused", "gradient_checkpointing": True},
    "hf-8bit": {"bf16_weights": True, "optim": "adamw_bnb_8bit", "gradient_checkpointing": True},
}
ESTIMATOR_CASES = [
    ("llama-3.2-1b", "full"),
    ("llama-3.2-1b", "lora"),
    ("llama-3.2-1b", "qlora"),
    ("llama-3-8b", "lora"),
    ("llama-3-8b", "qlora"),
    ("llama-3.2-3b", "full"),
    ("llama-3-8b", "full", {"full_recipe": "bf16_kahan"}),  # 8B full, lean recipe (issue 20)
]
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def flops_per_token(model_dir: Path, approach: str, lengths: list[int], hp: dict) -> float:
    from experiments.training.resources import trainable_params

    shape = model_shape(str(model_dir))
    embedding = shape.vocab_size * shape.hidden_size
    tied = bool(json.loads((model_dir / "config.json").read_text()).get("tie_word_embeddings"))
    matmul_params = shape.total_params - (0 if tied else embedding)
    if approach == "full":
        linear = 6 * matmul_params
    else:
        linear = 4 * matmul_params + 6 * trainable_params(shape, approach, hp)
    total_tokens = sum(lengths)
    attention = sum(3 * 2 * shape.num_layers * shape.hidden_size * n * n for n in lengths) / total_tokens
    return linear + attention


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


class _CountingPaddedCollator:
    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorForSeq2Seq

        from experiments.training.data import IGNORE_INDEX

        self.inner = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
        self.real_tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        self.real_tokens += sum(len(f["input_ids"]) for f in features)
        return self.inner(features)


def run_baseline(case_dir: Path, spec: dict, warmup: int, options: dict | None = None) -> dict:
    """Plain HF Trainer + peft, padded batches: what a user gets without T4DM. ``options``
    (HF_LEAN_VARIANTS): bf16_weights, optim, gradient_checkpointing."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from experiments.training.data import load_split, tokenize_dataset

    _free()
    hp, approach = spec["hyperparameters"], spec["approach"]
    model_dir = Path(spec["model_base"])
    on_gpu = torch.cuda.is_available()
    if "bnb" in (options or {}).get("optim", "") and not on_gpu:
        raise RuntimeError("bitsandbytes' 8-bit AdamW needs a CUDA GPU: skipped")
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if approach == "qlora":
        model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
            ),
            dtype=torch.bfloat16 if bf16 else torch.float32,
            device_map={"": 0} if on_gpu else None,
            attn_implementation="sdpa",
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        options = options or {}
        bf16_weights = options.get("bf16_weights") and (bf16 or not on_gpu)
        dtype = torch.bfloat16 if ((bf16 and approach != "full") or bf16_weights) else torch.float32
        with torch.device("cuda" if on_gpu else "cpu"):
            model = AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(model_dir), dtype=dtype, attn_implementation="sdpa"
            )
    if approach in ("lora", "qlora"):
        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=16,
                lora_alpha=32,
                lora_dropout=0.1,
                target_modules=["q_proj", "v_proj"],
            ),
        )
    rows = tokenize_dataset(
        load_split(spec["dataset"]["train"]),
        tokenizer,
        task_type="completion",
        max_seq_length=hp["max_seq_length"],
    )
    collator = _CountingPaddedCollator(tokenizer)
    marks: dict[str, tuple[float, int]] = {}

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, state.max_steps):
                if on_gpu:
                    torch.cuda.synchronize()
                marks["start" if state.global_step == warmup else "end"] = (
                    time.perf_counter(),
                    collator.real_tokens,
                )

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=hp["batch_size"],
            gradient_accumulation_steps=hp["gradient_accumulation"],
            max_steps=hp["max_steps"],
            learning_rate=2e-5,
            warmup_steps=0.1,
            bf16=bf16,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            use_cpu=not on_gpu,
            seed=42,
            optim=(options or {}).get("optim", "adamw_torch_fused" if on_gpu else "adamw_torch"),
            gradient_checkpointing=bool((options or {}).get("gradient_checkpointing")),
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[Timer()]
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    (t0, n0), (t1, n1) = marks["start"], marks["end"]
    result = {"tokens_per_sec": (n1 - n0) / (t1 - t0)}
    if on_gpu:
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    del trainer, model
    return result


def check_attention() -> float:
    """Per-document attention on the GPU: t4dm_varlen on two packed rows against SDPA on each row alone
    (causal); returns the largest absolute difference (bf16)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from experiments.training.packing import register_varlen_attention, varlen_attention_forward

    register_varlen_attention()
    torch.manual_seed(0)
    lengths, heads, kv_heads, dim = [37, 300], 8, 2, 128

    class Module(torch.nn.Module):
        num_key_value_groups = heads // kv_heads
        is_causal = True

    q = torch.randn(1, heads, sum(lengths), dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, kv_heads, sum(lengths), dim, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    cu = torch.tensor([0, lengths[0], sum(lengths)], device="cuda", dtype=torch.int32)
    packed, _ = varlen_attention_forward(
        Module(),
        q,
        k,
        v,
        None,
        scaling=dim**-0.5,
        cu_seq_lens_q=cu,
        cu_seq_lens_k=cu,
        max_length_q=max(lengths),
        max_length_k=max(lengths),
    )
    worst = 0.0
    for start, end in ((0, lengths[0]), (lengths[0], sum(lengths))):
        alone, _ = sdpa_attention_forward(
            Module(), q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], None, scaling=dim**-0.5
        )
        worst = max(worst, (packed[:, start:end] - alone).abs().max().item())
    return worst


def run_engine(spec: dict, warmup: int) -> dict:
    from experiments.training.engine import train
    from experiments.training.reporter import MemoryReporter

    _free()
    reporter = MemoryReporter()
    result = train({**spec, "throughput_warmup_steps": warmup}, reporter)
    out = {
        "tokens_per_sec": result["tokens_per_sec"],
        "log": [m for m in reporter.messages if "padding" in m or "recipe" in m],
    }
    if result.get("full_recipe"):
        out["full_recipe"] = result["full_recipe"]
    if "peak_gpu_memory_allocated_mb" in result:
        out["peak_mb"] = result["peak_gpu_memory_allocated_mb"]
    return out


def run_engine_distributed(spec: dict, warmup: int, gpus: int) -> dict:
    """The engine under torchrun on ``gpus`` GPUs, as a worker launches a job with ``gpus: N``."""
    from experiments.training.worker import train_distributed

    _free()
    result = train_distributed(
        {**spec, "throughput_warmup_steps": warmup}, gpus, server_url=None, token=None, timeout=1800
    )
    out = {"tokens_per_sec": result["tokens_per_sec"], "processes": result["processes"]}
    if "peak_gpu_memory_allocated_mb" in result:
        out["peak_mb"] = result["peak_gpu_memory_allocated_mb"]  # rank 0's
    return out


def _prepare(root: Path, shape: str, approach: str, steps: int, *, fixed: bool = False) -> tuple[Path, dict]:
    case_dir = root / f"{shape}-{approach}{'-fixed' if fixed else ''}"
    prepare_benchmark(
        case_dir,
        shape=shape,
        steps=steps,
        approach=approach,
        fixed_length=fixed,
        shape_params=TINY if shape == "tiny" else None,
        save_weights=approach == "qlora",
    )
    spec = json.loads((case_dir / "spec.json").read_text())
    spec["hyperparameters"]["logging_steps"] = 1
    return case_dir, spec


def throughput(args: argparse.Namespace, root: Path) -> list[dict]:
    rows = []
    for name in args.cases:
        shape, approach = CASES[name]
        case_dir, spec = _prepare(root, shape, approach, args.steps)
        from transformers import AutoTokenizer

        from experiments.training.data import load_split, tokenize_dataset

        tokenizer = AutoTokenizer.from_pretrained(spec["model_base"])
        lengths = [
            len(r["input_ids"])
            for r in tokenize_dataset(
                load_split(spec["dataset"]["train"]), tokenizer, task_type="completion", max_seq_length=1024
            )
        ]
        per_token = flops_per_token(Path(spec["model_base"]), approach, lengths, spec["hyperparameters"])
        row: dict[str, Any] = {"case": name, "mean_len": sum(lengths) / len(lengths)}
        if name.endswith("-full-lean"):
            lean = json.loads(json.dumps(spec))
            lean["hyperparameters"]["full_recipe"] = args.full_recipe
            runs = []
            for round_ in range(1, args.rounds + 1):  # alternating: every variant once per round
                for label, options in {} if args.no_baseline else HF_LEAN_VARIANTS.items():
                    runs.append(
                        (f"{label}-r{round_}", partial(run_baseline, case_dir, spec, args.warmup, options))
                    )
                runs.append((f"t4dm-r{round_}", partial(run_engine, lean, args.warmup)))
        else:
            runs = [] if args.no_baseline else [("hf", partial(run_baseline, case_dir, spec, args.warmup))]
            runs.append(("t4dm", partial(run_engine, spec, args.warmup)))
        if args.gpus > 1:  # the same job on several GPUs: each rank takes the same per-GPU batch
            runs.append(
                (f"t4dm-{args.gpus}gpu", partial(run_engine_distributed, spec, args.warmup, args.gpus))
            )
        for i, variant in enumerate(args.variants or []):
            varied = json.loads(json.dumps(spec))
            varied["hyperparameters"].update(variant)
            runs.append((f"t4dm-v{i}", partial(run_engine, varied, args.warmup)))
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run_engine(spec, args.warmup)
            print(
                prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70)
            )
            continue
        for label, fn in runs:
            try:
                row[label] = fn()
            except Exception as exc:  # report and go on with the other cases
                row[label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            peak = peak_flops()
            if peak and "tokens_per_sec" in row[label]:
                gpus = row[label].get("processes", 1)  # MFU per GPU
                row[label]["mfu"] = row[label]["tokens_per_sec"] * per_token / (peak * gpus)
            print(json.dumps({name: {label: row[label]}}), flush=True)
        rows.append(row)
    return rows


def estimator(args: argparse.Namespace, root: Path) -> list[dict]:
    from experiments.training.engine import DEFAULT_HYPERPARAMETERS

    rows = []
    for shape, approach, *extra in ESTIMATOR_CASES:
        label = f"{shape} {approach}" + (f" {extra[0]['full_recipe']}" if extra else "")
        if args.estimator_cases and label not in args.estimator_cases:
            continue
        case_dir, spec = _prepare(root, shape, approach, args.estimator_steps, fixed=True)
        spec["hyperparameters"].update(extra[0] if extra else {})
        hp = {**DEFAULT_HYPERPARAMETERS, **spec["hyperparameters"]}
        parts = memory_breakdown(model_shape(spec["model_base"]), approach, hp)
        # PyTorch's peak allocation leaves out the CUDA context, so the estimate's overhead part too.
        predicted = (sum(parts.values()) - parts["overhead"]) / 2**20
        row: dict[str, Any] = {
            "case": label,
            "predicted_mb": predicted,
            "parts_mb": {k: round(v / 2**20) for k, v in parts.items()},
        }
        try:
            row.update(run_engine(spec, 1))
            row["error_pct"] = 100 * (predicted - row["peak_mb"]) / row["peak_mb"]
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        print(json.dumps(row), flush=True)
        rows.append(row)
        shutil.rmtree(case_dir, ignore_errors=True)  # a full fine-tune's checkpoint is tens of GB
    return rows


def print_lean_table(rows: list[dict]) -> None:
    """Full-lean cases: each variant's best round (tokens/s, MFU, peak), and T4DM over the faster HF."""
    if not rows:
        return
    print(f"\n{'case':15} {'variant':8} {'tok/s':>9} {'MFU':>6} {'peak MiB':>9} {'rounds':>6}")
    for r in rows:
        best: dict[str, dict] = {}
        for label, run in r.items():
            if not isinstance(run, dict) or "-r" not in label:
                continue
            variant = label.rsplit("-r", 1)[0]
            if "tokens_per_sec" not in run:
                best.setdefault(variant, run)
                continue
            if (
                "tokens_per_sec" not in best.get(variant, {})
                or run["tokens_per_sec"] > best[variant]["tokens_per_sec"]
            ):
                best[variant] = {**run, "rounds": sum(1 for k in r if k.startswith(variant + "-r"))}
        for variant, run in best.items():
            if "tokens_per_sec" not in run:
                print(f"{r['case']:15} {variant:8} error: {run.get('error', '?')[:90]}")
                continue
            mfu = f"{100 * run['mfu']:5.1f}%" if "mfu" in run else f"{'-':>6}"
            peak = f"{run['peak_mb']:9,.0f}" if "peak_mb" in run else f"{'-':>9}"
            print(f"{r['case']:15} {variant:8} {run['tokens_per_sec']:9,.0f} {mfu} {peak} {run['rounds']:6}")
        hf = [best[v]["tokens_per_sec"] for v in HF_LEAN_VARIANTS if "tokens_per_sec" in best.get(v, {})]
        if hf and "tokens_per_sec" in best.get("t4dm", {}):
            print(f"{r['case']:15} T4DM / faster plain HF: {best['t4dm']['tokens_per_sec'] / max(hf):.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["8b-lora", "1b-full", "8b-qlora"], choices=list(CASES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="full-lean cases: alternating rounds")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument(
        "--full-recipe",
        default="bf16_kahan",
        choices=["auto", "bf16_kahan", "adamw_8bit", "fp32_master"],
        help="full-lean cases: the engine's recipe (auto: what a job gets on this GPU)",
    )
    parser.add_argument("--estimator", action="store_true", help="estimate vs measured peak memory")
    parser.add_argument("--estimator-steps", type=int, default=3)
    parser.add_argument(
        "--estimator-cases", nargs="+", default=None, help='only these, e.g. "llama-3-8b full bf16_kahan"'
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--no-baseline", action="store_true", help="engine only (exploring settings)")
    parser.add_argument(
        "--gpus", type=int, default=1, help="also run the engine on this many GPUs (torchrun)"
    )
    parser.add_argument("--profile", action="store_true", help="profile the engine's CUDA kernels")
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="the engine writes no checkpoint or final model (disk-bound machines)",
    )
    parser.add_argument(
        "--variants",
        type=json.loads,
        default=None,
        help="JSON list of hyperparameter overrides, each run as an extra engine row",
    )
    args = parser.parse_args()
    if args.no_save:
        # The engine's checkpoint and final model of an 8B full fine-tune (weights + optimizer state,
        # ~80 GB) do not fit a 64 GB disk; tokens/s is measured before they are written.
        import transformers

        from experiments.training.checkpoints import AtomicCheckpointTrainer

        AtomicCheckpointTrainer._save_checkpoint = lambda self, model, trial: None
        transformers.Trainer.save_model = lambda self, *args, **kwargs: None
    if args.warmup >= args.steps:
        parser.error("--warmup must be below --steps")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device: {device}; torch {torch.__version__}; transformers {transformers.__version__}")
    if torch.cuda.is_available():
        from experiments.training.packing import varlen_available

        if varlen_available():
            diff = check_attention()
            print(f"t4dm_varlen vs per-row SDPA: max |diff| {diff:.2e} (bf16)")
            if diff > 2e-2:
                raise SystemExit("per-document attention does not match SDPA: not measuring")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        if args.estimator:
            rows = estimator(args, root)
            print(f"\n{'config':34} {'predicted MiB':>14} {'measured MiB':>13} {'error':>8}")
            for r in rows:
                if "error" in r:
                    print(f"{r['case']:34} {r['predicted_mb']:14,.0f} {'-':>13} {r['error']}")
                else:
                    print(
                        f"{r['case']:34} {r['predicted_mb']:14,.0f} {r['peak_mb']:13,.0f} {r['error_pct']:+7.1f}%"
                    )
        else:
            rows = throughput(args, root)
            print_lean_table([r for r in rows if r["case"].endswith("-full-lean")])
            if any("hf" in r for r in rows):
                print(
                    f"\n{'case':10} {'HF tok/s':>10} {'T4DM tok/s':>11} {'ratio':>6} {'HF MFU':>7} {'T4DM MFU':>9}"
                    f" {'HF peak MiB':>12} {'T4DM peak MiB':>14} {'mem ratio':>9}"
                )
            for r in rows:
                if "hf" not in r:
                    continue
                hf, t4 = r["hf"], r["t4dm"]
                if "error" in hf or "error" in t4:
                    print(f"{r['case']:10} error: {hf.get('error') or t4.get('error')}")
                    continue
                ratio = t4["tokens_per_sec"] / hf["tokens_per_sec"]
                mfu = (
                    f"{100 * hf['mfu']:6.1f}% {100 * t4['mfu']:8.1f}%"
                    if "mfu" in hf
                    else f"{'-':>7} {'-':>9}"
                )
                mem = (
                    f"{hf['peak_mb']:12,.0f} {t4['peak_mb']:14,.0f} {t4['peak_mb'] / hf['peak_mb']:9.2f}"
                    if "peak_mb" in hf
                    else ""
                )
                print(
                    f"{r['case']:10} {hf['tokens_per_sec']:10,.0f} {t4['tokens_per_sec']:11,.0f} {ratio:5.2f}x "
                    f"{mfu} {mem}"
                )
            if args.gpus > 1:
                label = f"t4dm-{args.gpus}gpu"
                print(
                    f"\n{'case':10} {'1 GPU tok/s':>12} {f'{args.gpus} GPUs tok/s':>13} {'scaling':>8}"
                    f" {'efficiency':>10} {'MFU/GPU':>8}"
                )
                for r in rows:
                    one, many = r.get("t4dm", {}), r.get(label, {})
                    if "tokens_per_sec" not in one or not many.get("tokens_per_sec"):
                        print(f"{r['case']:10} error: {one.get('error') or many.get('error')}")
                        continue
                    scale = many["tokens_per_sec"] / one["tokens_per_sec"]
                    mfu = f"{100 * many['mfu']:7.1f}%" if "mfu" in many else f"{'-':>8}"
                    print(
                        f"{r['case']:10} {one['tokens_per_sec']:12,.0f} {many['tokens_per_sec']:13,.0f}"
                        f" {scale:7.2f}x {100 * scale / args.gpus:9.1f}% {mfu}"
                    )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
