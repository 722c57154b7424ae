"""Serving on CPU: tokens/s and time to first token through /v1/completions (streamed, the embedded
platform as `t4dm_up` runs it: daphne, the serving worker, the in-memory channel layer) against plain
`transformers` generate of the same model in this process, alternating, same prompt, greedy.

    .venv/bin/python benchmarks/serving.py [--reps 7] [--max-tokens 64] [--concurrency 4]
                                           [--out benchmarks/results/serving-cpu.txt]

- Model: the project's tiny Llama (built here, deterministic). Both sides load it once before timing.
- Endpoint: the real `openai` client, `stream=True` with usage; TTFT is from sending the request to the
  first non-empty text chunk; tokens/s is completion tokens / the request's whole time.
- Plain: `model.generate(..., streamer=...)` with the KV cache, in a thread (see `_plain_once`); TTFT
  to the first new token.
- Concurrency: `--concurrency` streamed requests at once (the worker batches them) against the same
  number of plain generate calls one after another; aggregate tokens/s.
Every repetition's numbers are printed (and written to --out) before the table of medians and ranges.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "The platform trains a model on the data and"


def _endpoint_once(client, max_tokens: int) -> tuple[float, float, int]:
    """(ttft seconds, total seconds, completion tokens) of one streamed completion."""
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = client.completions.create(
        model="t4dm-tiny", prompt=PROMPT, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    total = time.perf_counter() - started
    return (first if first is not None else total), total, tokens


class _FirstToken:
    def __init__(self) -> None:
        self.seen_prompt, self.first, self.started = False, None, 0.0

    def put(self, value) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
        elif self.first is None:
            self.first = time.perf_counter() - self.started

    def end(self) -> None:
        pass


def _plain_once(model, tokenizer, max_tokens: int) -> tuple[float, float, int]:
    """In a thread of its own, as the serving engine generates (with 2 torch threads on this shared
    2-core machine, generate ran 10-30x slower from the main thread than from another one: measured)."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(_plain_generate(model, tokenizer, max_tokens)))
    thread.start()
    thread.join()
    return result[0]


def _plain_generate(model, tokenizer, max_tokens: int) -> tuple[float, float, int]:
    import torch

    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    streamer = _FirstToken()
    started = streamer.started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id, use_cache=True, streamer=streamer,
        )  # fmt: skip
    total = time.perf_counter() - started
    return (streamer.first or total), total, int(out.shape[1] - ids.shape[1])


def _endpoint_concurrent(client, max_tokens: int, n: int) -> tuple[float, int]:
    results: list = [None] * n

    def run(i: int) -> None:
        results[i] = _endpoint_once(client, max_tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, sum(r[2] for r in results)


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads, both sides (0: torch's default)"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serving-cpu.txt"))
    args = parser.parse_args()

    import os
    import platform as pyplatform

    import torch
    from openai import OpenAI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experiments.training.tiny_model import build_tiny_model
    from tests.platform import Platform, _boot, _clean_env, free_port

    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    work = Path(tempfile.mkdtemp(prefix="t4dm-serving-bench-"))
    tiny = build_tiny_model(work / "tiny", seed=0)
    port = free_port()
    env = {**_clean_env(), "T4DM_DATA_DIR": str(work / "data"), "T4DM_TINY_MODEL_DIR": str(tiny),
           "T4DM_COMPARE_TO_BASE": "0", "T4DM_SERVER_URL": f"http://127.0.0.1:{port}",
           "T4DM_SERVING_TORCH_THREADS": str(args.threads)}  # fmt: skip
    if args.threads:
        torch.set_num_threads(args.threads)
    platform = _boot(Platform(base_url=f"http://127.0.0.1:{port}", env=env))
    platform.spawn(sys.executable, "manage.py", "t4dm_up", "--port", str(port), log=work / "t4dm_up.log")
    try:
        platform.wait_until_up(timeout=300)
        client = OpenAI(
            base_url=platform.base_url + "/v1", api_key=platform.token, max_retries=0, timeout=300
        )
        model = AutoModelForCausalLM.from_pretrained(tiny).eval()
        tokenizer = AutoTokenizer.from_pretrained(tiny)
        say(f"# serving benchmark: tiny Llama ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params), "
            f"CPU, prompt {PROMPT!r}, max_tokens {args.max_tokens}, greedy")  # fmt: skip
        say(
            f"# machine: {pyplatform.processor() or pyplatform.machine()}, {os.cpu_count()} CPUs visible, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads here), shared with other work"
        )
        say(f"# started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        # Warm-up: the worker's first request imports torch and loads the model.
        t0 = time.perf_counter()
        _endpoint_once(client, 4)
        say(f"# first (cold) request through the endpoint: {time.perf_counter() - t0:.2f} s")
        _plain_once(model, tokenizer, 4)
        _endpoint_once(client, args.max_tokens)

        rows = {"endpoint": [], "plain": []}
        conc = {"endpoint": [], "plain": []}
        say("rep side       ttft_ms  total_s  tokens  tokens_per_s")
        for rep in range(args.reps):
            order = ("endpoint", "plain") if rep % 2 == 0 else ("plain", "endpoint")
            for side in order:
                ttft, total, tokens = (
                    _endpoint_once(client, args.max_tokens) if side == "endpoint"
                    else _plain_once(model, tokenizer, args.max_tokens)
                )  # fmt: skip
                rows[side].append((ttft, total, tokens))
                say(
                    f"{rep:>3} {side:<10} {ttft * 1000:>7.1f}  {total:>7.3f}  {tokens:>6}  {tokens / total:>12.1f}"
                )
        say(f"rep side       concurrent={args.concurrency}: total_s  tokens  tokens_per_s (aggregate)")
        for rep in range(max(3, args.reps // 2)):
            order = ("endpoint", "plain") if rep % 2 == 0 else ("plain", "endpoint")
            for side in order:
                if side == "endpoint":
                    total, tokens = _endpoint_concurrent(client, args.max_tokens, args.concurrency)
                else:
                    started = time.perf_counter()
                    tokens = sum(
                        _plain_once(model, tokenizer, args.max_tokens)[2] for _ in range(args.concurrency)
                    )
                    total = time.perf_counter() - started
                conc[side].append((total, tokens))
                say(f"{rep:>3} {side:<10} {total:>8.3f}  {tokens:>6}  {tokens / total:>10.1f}")

        say("")
        say("| side | TTFT ms, median [min–max] | tokens/s, median [min–max] | "
            f"{args.concurrency} at once: tokens/s, median [min–max] |")  # fmt: skip
        say("|---|---|---|---|")
        for side, label in (("endpoint", "/v1/completions (stream)"), ("plain", "transformers generate")):
            ttft = [r[0] * 1000 for r in rows[side]]
            tps = [r[2] / r[1] for r in rows[side]]
            ctps = [t / s for s, t in conc[side]]
            note = " (sequential)" if side == "plain" else " (batched)"
            say(
                f"| {label} | {_spread(ttft, '.1f')} | {_spread(tps, '.1f')} | {_spread(ctps, '.1f')}{note} |"
            )
        log = (work / "t4dm_up.log").read_text(errors="replace")
        sizes = [int(m) for m in re.findall(r"serving: batch of (\d+) on", log)]
        say(f"# batches the serving worker ran (size: count): {dict(sorted(Counter(sizes).items()))}")
        say(f"# finished {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    finally:
        platform.stop()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
