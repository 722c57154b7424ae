"""Serving on one GPU: the serving worker's engine (models_registry/serving/engine.py, what
/v1/chat/completions and /v1/completions run on a serving worker) against plain `transformers`
generate of the same model object, in one process, alternating, same prompt, greedy, bf16.

    python benchmarks/serving_gpu.py [--shape 8b] [--reps 5] [--max-tokens 128] [--concurrency 8]
    python benchmarks/serving_gpu.py --shape tiny --reps 2 --max-tokens 16   # CPU smoke run

- Model: an 8B-shaped Llama body (32 layers × 4096, GQA 8 KV heads, MLP 14336), random init, built
  on the GPU (no download). Its vocabulary is the project's tiny tokenizer's (no Llama-3 tokenizer is
  reachable offline), so the LM head is smaller than Llama-3's 128k one: ~7.0 B parameters, printed.
  EOS is switched off on both sides so every request makes exactly --max-tokens tokens (checked).
- Engine side: `Engine.submit` → events, as the Celery serving task consumes them; TTFT = submit to
  the first text delta; tokens/s = completion tokens / submit-to-done. The HTTP and Channels hop in
  front of it is measured on CPU by benchmarks/serving.py (the whole path through daphne).
- Plain side: `model.generate(..., streamer=...)` with the KV cache; TTFT to the first new token.
- Concurrency: --concurrency requests submitted at once (the engine batches them) against the same
  number of plain generate calls one after another; aggregate tokens/s.
Each repetition is printed, then a table of medians with [min–max].
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = (
    "The platform trains a model on the data, evaluates it against the reference answers, and "
    "registers the best version so that the team can deploy it behind the chat API. "
) * 4
SHAPES = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048),
}  # fmt: skip


class _FirstToken:
    def __init__(self, started: float) -> None:
        self.started, self.seen_prompt, self.first = started, False, None

    def put(self, value) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
        elif self.first is None:
            self.first = time.perf_counter() - self.started

    def end(self) -> None:
        pass


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def plain_once(model, tokenizer, max_tokens: int) -> tuple[float, float, int]:
    import torch

    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(model.device)
    _sync()
    started = time.perf_counter()
    streamer = _FirstToken(started)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
            min_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
            use_cache=True, streamer=streamer,
        )  # fmt: skip
    _sync()
    total = time.perf_counter() - started
    return (streamer.first or total), total, int(out.shape[1] - ids.shape[1])


def engine_many(engine, path: str, max_tokens: int, n: int) -> list[tuple[float, float, int]]:
    """Submit n requests at once; (ttft, total, tokens) of each."""
    started = time.perf_counter()
    spec = {"path": path, "kind": "completion", "prompt": PROMPT, "max_tokens": max_tokens,
            "temperature": 0, "top_p": 1.0, "stop": None, "seed": None}  # fmt: skip
    results: list = [None] * n

    def consume(i: int, request) -> None:  # one reader per request, as one Celery task thread each
        first, tokens = None, 0
        while True:
            event = request.events.get(timeout=600)
            if event["type"] == "delta" and first is None:
                first = time.perf_counter() - started
            elif event["type"] == "done":
                tokens = event["completion_tokens"]
                break
            elif event["type"] == "error":
                raise RuntimeError(event)
        total = time.perf_counter() - started
        results[i] = ((first if first is not None else total), total, tokens)

    requests = [engine.submit(dict(spec)) for _ in range(n)]
    readers = [threading.Thread(target=consume, args=(i, r)) for i, r in enumerate(requests)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    return results


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=list(SHAPES), default="8b")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", default=None, help="also write the output here")
    args = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from experiments.training.tiny_model import build_tokenizer
    from models_registry.serving.engine import Engine, Loaded

    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=False, **SHAPES[args.shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    # No EOS on either side: every request makes exactly max_tokens tokens.
    model.generation_config.eos_token_id = None
    tokenizer.eos_token_id = None
    params = sum(p.numel() for p in model.parameters())
    path = f"bench://{args.shape}"
    engine = Engine(max_batch=args.concurrency, idle_s=3600, backend="transformers")
    engine.pool.models[path] = Loaded(
        model=model, tokenizer=tokenizer, context=config.max_position_embeddings
    )
    prompt_tokens = len(tokenizer(PROMPT)["input_ids"])
    gpu = torch.cuda.get_device_name(0) if cuda else "CPU"
    say(f"# serving engine vs plain generate: {args.shape} Llama body, {params / 1e9:.2f} B params, {dtype}, "
        f"{gpu}; prompt {prompt_tokens} tokens, max_tokens {args.max_tokens}, greedy, EOS off")  # fmt: skip
    say(f"# torch {torch.__version__}; started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    engine_many(engine, path, 4, 1)  # warm-up both sides (kernels, allocator)
    plain_once(model, tokenizer, 4)

    rows: dict[str, list] = {"engine": [], "plain": []}
    say("rep side     ttft_ms  total_s  tokens  tokens_per_s")
    for rep in range(args.reps):
        for side in ("engine", "plain") if rep % 2 == 0 else ("plain", "engine"):
            if side == "engine":
                ttft, total, tokens = engine_many(engine, path, args.max_tokens, 1)[0]
            else:
                ttft, total, tokens = plain_once(model, tokenizer, args.max_tokens)
            if tokens != args.max_tokens:
                raise SystemExit(f"{side} made {tokens} tokens, not {args.max_tokens}")
            rows[side].append((ttft, total, tokens))
            say(
                f"{rep:>3} {side:<8} {ttft * 1000:>7.1f}  {total:>7.3f}  {tokens:>6}  {tokens / total:>12.1f}"
            )
    conc: dict[str, list] = {"engine": [], "plain": []}
    say(f"rep side     {args.concurrency} at once: total_s  tokens  tokens_per_s  ttft_ms(median)")
    for rep in range(max(2, args.reps // 2)):
        for side in ("engine", "plain") if rep % 2 == 0 else ("plain", "engine"):
            started = time.perf_counter()
            if side == "engine":
                results = engine_many(engine, path, args.max_tokens, args.concurrency)
            else:
                results = []
                for _ in range(args.concurrency):
                    offset = time.perf_counter() - started
                    ttft, total, tokens = plain_once(model, tokenizer, args.max_tokens)
                    results.append((offset + ttft, offset + total, tokens))
            total = time.perf_counter() - started
            tokens = sum(r[2] for r in results)
            ttft = statistics.median(r[0] for r in results)
            conc[side].append((total, tokens, ttft))
            say(
                f"{rep:>3} {side:<8} {total:>8.3f}  {tokens:>6}  {tokens / total:>10.1f}  {ttft * 1000:>8.1f}"
            )
    say("")
    say(f"| side | TTFT ms | tokens/s | {args.concurrency} at once: tokens/s | {args.concurrency} at once: "
        "median TTFT ms |")  # fmt: skip
    say("|---|---|---|---|---|")
    for side, label in (("engine", "serving engine"), ("plain", "transformers generate")):
        ttft = [r[0] * 1000 for r in rows[side]]
        tps = [r[2] / r[1] for r in rows[side]]
        ctps = [t / s for s, t, _ in conc[side]]
        cttft = [f * 1000 for _, _, f in conc[side]]
        note = " (batched)" if side == "engine" else " (one after another)"
        say(f"| {label} | {_spread(ttft, '.1f')} | {_spread(tps, '.1f')} | {_spread(ctps, '.1f')}{note} | "
            f"{_spread(cttft, '.0f')} |")  # fmt: skip
    say(f"# engine batch sizes (last runs): {engine.batch_sizes[-12:]}")
    if cuda:
        say(f"# peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
