"""The serving engine inside a serving worker process: Django-free, plain transformers.

One engine thread per process owns the loaded models. Requests (plain dicts, see `Request`) are put on
its queue by the Celery task threads; each round it takes what is waiting (up to `max_batch`), groups
the requests that can share one `generate` call (same model, same sampling settings), and runs each
group as one left-padded batch with the KV cache on. Tokens go out per request as they are made
(`Request.events`); a request that reached its own token limit, a stop string, or EOS stops counting
while the rest of its batch goes on (a per-row stopping criterion ends the call when all rows are
done). This is static batching: a request that arrives while a batch runs waits for the next round.

A model unused for `idle_s` seconds is unloaded (the engine checks between rounds). With
T4DM_SERVING_BACKEND=vllm (or auto) and vLLM installed on a CUDA machine, full (non-adapter) models
run on vLLM instead; that path returns each completion as one piece and is not tested here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# What the engine sends back per request, in order: one "start", any number of "delta", then "done";
# or one "error" instead (before any delta, e.g. a prompt longer than the model's context).
Event = dict[str, Any]


@dataclass
class Request:
    """One completion. `spec` keys: path, kind ("chat" | "completion"), messages or prompt,
    max_tokens, temperature, top_p, stop (list of strings), seed (int or None)."""

    spec: dict[str, Any]
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event) -> None:
        self.events.put(event)

    def group_key(self) -> tuple:
        s = self.spec
        if s["temperature"] == 0:  # greedy rows batch together whatever their other settings
            return (s["path"], "greedy")
        return (s["path"], "sample", s["temperature"], s["top_p"], s.get("seed"))


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    context: int | None
    vllm: bool = False
    last_used: float = field(default_factory=time.monotonic)


def _is_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def _vllm_available() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


class ModelPool:
    """Loaded models by folder; `unload_idle` drops those unused for `idle_s` seconds."""

    def __init__(self, *, idle_s: float, backend: str = "auto") -> None:
        self.idle_s, self.backend = idle_s, backend
        self.models: dict[str, Loaded] = {}

    def get(self, path: str) -> Loaded:
        loaded = self.models.get(path)
        if loaded is None:
            loaded = self.models[path] = self._load(path)
        loaded.last_used = time.monotonic()
        return loaded

    def _load(self, path: str) -> Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(path)
        adapter = _is_adapter(path)
        if self.backend in ("auto", "vllm") and not adapter and _vllm_available():
            from vllm import LLM

            model = LLM(model=path)
            logger.info("serving: loaded %s on vLLM in %.1f s", path, time.perf_counter() - started)
            return Loaded(model=model, tokenizer=tokenizer, context=None, vllm=True)
        if self.backend == "vllm" and not _vllm_available():
            logger.warning(
                "serving: T4DM_SERVING_BACKEND=vllm but vLLM or CUDA is missing; using transformers"
            )
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        if adapter:
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model = model.to(device).eval()
        context = getattr(model.config, "max_position_embeddings", None)
        logger.info("serving: loaded %s (%s) in %.1f s", path, device, time.perf_counter() - started)
        return Loaded(model=model, tokenizer=tokenizer, context=context)

    def unload_idle(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        gone = [p for p, m in self.models.items() if now - m.last_used >= self.idle_s]
        for path in gone:
            del self.models[path]
            logger.info("serving: unloaded %s after %g s idle", path, self.idle_s)
        if gone:
            import gc

            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass
        return gone


def prompt_token_ids(tokenizer, spec: dict[str, Any]) -> list[int]:
    if spec["kind"] == "chat":
        from models_registry.playground import prompt_ids  # the playground's chat formatting

        return prompt_ids(tokenizer, spec["messages"])[0].tolist()
    return tokenizer(spec["prompt"])["input_ids"]


class _Row:
    """One request inside a batch: its new tokens, the text sent so far, why it finished."""

    def __init__(self, request: Request, prompt: list[int], tokenizer, eos: set[int]) -> None:
        self.request, self.prompt, self.tokenizer, self.eos = request, prompt, tokenizer, eos
        self.max_tokens = int(request.spec["max_tokens"])
        self.stop = [s for s in request.spec.get("stop") or [] if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1  # a stop string may be forming
        self.ids: list[int] = []
        self.sent = ""
        self.finish: str | None = None

    def add(self, token: int) -> None:
        if self.finish is not None:
            return
        if self.request.cancelled.is_set():
            self.finish = "cancelled"
            return
        if token in self.eos:
            self._end("stop")
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.stop:
            at = text.find(stop)
            if at >= 0:
                self._send(text[:at], force=True)
                self.finish = "stop"
                return
        if len(self.ids) >= self.max_tokens:
            self._end("length")
            return
        self._send(text[: len(text) - self.hold] if self.hold else text)

    def _end(self, reason: str) -> None:
        self._send(self.tokenizer.decode(self.ids, skip_special_tokens=True), force=True)
        self.finish = reason

    def _send(self, text: str, force: bool = False) -> None:
        # Only complete characters: a byte-level token can end inside a UTF-8 sequence.
        if not text.startswith(self.sent) or (text.endswith("\ufffd") and not force):
            return
        delta, self.sent = text[len(self.sent) :], text
        if delta:
            self.request.emit({"type": "delta", "text": delta})

    def done_event(self) -> Event:
        return {
            "type": "done",
            "finish_reason": self.finish if self.finish in ("stop", "length") else "stop",
            "prompt_tokens": len(self.prompt),
            "completion_tokens": len(self.ids),
        }


class _BatchStreamer:
    """transformers' streamer protocol for a batch: put() gets the prompts once, then a token per row."""

    def __init__(self, rows: list[_Row]) -> None:
        self.rows, self.prompt_seen = rows, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist(), strict=True):
            row.add(int(token))

    def end(self) -> None:
        pass


def _rows_done_criterion(rows: list[_Row]):
    import torch
    from transformers import StoppingCriteria

    class RowsDone(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([row.finish is not None for row in rows], device=input_ids.device)

    return RowsDone()


def generate_batch(loaded: Loaded, requests: list[Request]) -> None:
    """Run `requests` (same model, same sampling settings) as one batch; every request gets its
    events, ending in "done" or "error"."""
    import torch

    tokenizer = loaded.tokenizer
    eos_ids = tokenizer.eos_token_id
    eos = {eos_ids} if isinstance(eos_ids, int) else set(eos_ids or [])
    rows: list[_Row] = []
    for request in requests:
        try:
            prompt = prompt_token_ids(tokenizer, request.spec)
        except Exception as exc:  # a template that refuses these messages
            request.emit({"type": "error", "status": 400, "code": "invalid_prompt", "message": str(exc)})
            continue
        limit = loaded.context
        if limit is not None and len(prompt) + int(request.spec["max_tokens"]) > limit:
            request.emit({
                "type": "error", "status": 400, "code": "context_length_exceeded",
                "message": f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt) + int(request.spec['max_tokens'])} tokens ({len(prompt)} in the prompt, "
                f"{request.spec['max_tokens']} for the completion). Reduce the prompt or max_tokens.",
            })  # fmt: skip
            continue
        rows.append(_Row(request, prompt, tokenizer, eos))
        request.emit({"type": "start", "prompt_tokens": len(prompt)})
    if not rows:
        return
    if loaded.vllm:
        _generate_vllm(loaded, rows)
    else:
        spec = rows[0].request.spec
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
        width = max(len(r.prompt) for r in rows)
        device = loaded.model.device
        input_ids = torch.tensor([[pad] * (width - len(r.prompt)) + r.prompt for r in rows], device=device)
        mask = torch.tensor(
            [[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows], device=device
        )
        kwargs: dict[str, Any] = {"do_sample": spec["temperature"] > 0}
        if kwargs["do_sample"]:
            kwargs.update(temperature=spec["temperature"], top_p=spec["top_p"], top_k=0)
            if spec.get("seed") is not None:
                torch.manual_seed(int(spec["seed"]))
        from transformers import StoppingCriteriaList

        with torch.no_grad():
            loaded.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=max(r.max_tokens for r in rows),
                pad_token_id=pad,
                use_cache=True,  # the KV cache: each step feeds one new token per row
                streamer=_BatchStreamer(rows),
                stopping_criteria=StoppingCriteriaList([_rows_done_criterion(rows)]),
                **kwargs,
            )
    for row in rows:
        if row.finish is None:  # generate stopped for every row at once (its own max or EOS)
            row._end("length" if len(row.ids) >= row.max_tokens else "stop")
        row.request.emit(row.done_event())


def _generate_vllm(loaded: Loaded, rows: list[_Row]) -> None:  # pragma: no cover - needs vLLM + CUDA
    from vllm import SamplingParams

    spec = rows[0].request.spec
    params = [
        SamplingParams(
            max_tokens=r.max_tokens, temperature=spec["temperature"], top_p=spec["top_p"],
            stop=r.stop or None, seed=spec.get("seed"),
        )
        for r in rows
    ]  # fmt: skip
    outputs = loaded.model.generate([{"prompt_token_ids": r.prompt} for r in rows], params)
    for row, output in zip(rows, outputs, strict=True):
        piece = output.outputs[0]
        row.ids = list(piece.token_ids)
        row.sent = piece.text
        if piece.text:
            row.request.emit({"type": "delta", "text": piece.text})
        row.finish = "length" if piece.finish_reason == "length" else "stop"


class Engine:
    """The one generation thread of a serving worker process."""

    def __init__(
        self,
        *,
        max_batch: int,
        idle_s: float,
        backend: str = "auto",
        torch_threads: int = 0,
        start: bool = True,
    ) -> None:
        self.max_batch, self.torch_threads = max_batch, torch_threads
        self.pool = ModelPool(idle_s=idle_s, backend=backend)
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.batch_sizes: list[int] = []  # the size of each batch run, newest last (the last 1,000)
        self.thread = threading.Thread(target=self._loop, name="serving-engine", daemon=True)
        if start:
            self.thread.start()

    def start(self) -> None:
        self.thread.start()

    def submit(self, spec: dict[str, Any]) -> Request:
        request = Request(spec=spec)
        self.inbox.put(request)
        return request

    def _take(self) -> list[Request]:
        wait = max(0.5, min(self.pool.idle_s, 5.0))
        try:
            taken = [self.inbox.get(timeout=wait)]
        except queue.Empty:
            return []
        while len(taken) < self.max_batch:
            try:
                taken.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return taken

    def _loop(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        while True:
            taken = self._take()
            groups: dict[tuple, list[Request]] = {}
            for request in taken:
                if not request.cancelled.is_set():
                    groups.setdefault(request.group_key(), []).append(request)
            for group in groups.values():
                self._run(group)
            self.pool.unload_idle()

    def _run(self, group: list[Request]) -> None:
        try:
            loaded = self.pool.get(group[0].spec["path"])
            self.batch_sizes = [*self.batch_sizes[-999:], len(group)]
            started = time.perf_counter()
            generate_batch(loaded, group)
            loaded.last_used = time.monotonic()
            logger.info("serving: batch of %d on %s in %.2f s", len(group), group[0].spec["path"],
                        time.perf_counter() - started)  # fmt: skip
        except Exception as exc:
            logger.exception("serving: a batch failed")
            for request in group:
                request.emit({"type": "error", "status": 500, "code": "generation_failed",
                              "message": f"generation failed on the worker: {type(exc).__name__}"})  # fmt: skip


_engine: Engine | None = None
_engine_lock = threading.Lock()


def engine(factory: Callable[[], Engine]) -> Engine:
    """This process's engine, started on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = factory()
        return _engine
