"""Serving on the web side: which model a request names, what it asks for, and the round trip to a
serving worker.

`model` is anything the one model resolver (experiments/model_refs.py) accepts for the caller — a
registered version `model_id@1.0.0`, a job or checkpoint, a built-in base — plus two names of our own:
`model_id@production` / `model_id@staging` (the version in that stage) and the `ft:…` name that the
OpenAI-compatible fine-tuning jobs return (`…:ckpt-step-N` for a checkpoint). Another owner's model is
the resolver's one 404.

The round trip: the web process opens a channel on the channel layer, signs its name into a reply
token and queues `serving.generate` on the serving queue; the worker posts its events to
/v1/serving/events/ with that token and the receiving web process puts them on the channel. So it works
with the in-memory layer (one ASGI process, the embedded default) and with Redis (any number).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.core.cache import cache

from experiments.model_refs import ModelUnavailable, builtin_models, model_resolve
from t4dm_site.errors import DomainError, InvalidInput

REPLY_SALT = "t4dm.serving.reply"
REPLY_MAX_AGE_S = 24 * 3600
_FT_CHECKPOINT = re.compile(r"^(?P<name>ft:.+):ckpt-step-(?P<step>\d{1,12})$")
_STAGE_REF = re.compile(r"^(?P<model_id>[A-Za-z0-9][A-Za-z0-9_.-]*)@(?P<stage>production|staging)$")


class ServingUnavailable(DomainError):
    status = 503
    code = "serving_unavailable"


class GenerationError(DomainError):
    """An error a worker reported (its status: 400 for a prompt over the context, 500 otherwise)."""

    def __init__(self, event: dict):
        super().__init__(str(event.get("message") or "generation failed"), code=event.get("code"))
        self.status = int(event.get("status") or 500)


# --- which model ------------------------------------------------------------------------------------


def _ft_ref(user, name: str) -> str:
    """`ft:<base>:<org>:<suffix>:<ftjob id>[:ckpt-step-N]` → `job-001` or `job-001/step-N`."""
    from experiments.openai_compat.services import jobs_visible_to

    step = None
    match = _FT_CHECKPOINT.match(name)
    if match:
        name, step = match.group("name"), match.group("step")
    ftjob_id = name.rsplit(":", 1)[-1]
    ftjob = jobs_visible_to(user).filter(ftjob_id=ftjob_id).first()
    if ftjob is None or _ft_name(ftjob) != name:
        raise ModelUnavailable("model")
    return ftjob.job.public_id + (f"/step-{step}" if step else "")


def _ft_name(ftjob) -> str:
    from experiments.openai_compat.services import fine_tuned_model_name

    return fine_tuned_model_name(ftjob)


def _stage_ref(user, model_id: str, stage: str) -> str:
    from models_registry.selectors import versions_visible_to
    from models_registry.services import semver_key

    versions = list(versions_visible_to(user).filter(model_id=model_id, stage=stage))
    versions.sort(
        key=lambda v: (
            getattr(v.registered, "owner_id", None) != user.pk,
            [-x for x in semver_key(v.version)],
        )
    )
    if not versions:
        raise ModelUnavailable("model")
    return f"{model_id}@{versions[0].version}"


def served_model_path(*, user, model: str) -> str:
    """The folder to generate from for `model`, for `user` (404 for anything not theirs to use)."""
    name = (model or "").strip()
    if not name:
        raise InvalidInput("model: required", details={"param": "model"})
    if name.startswith("ft:"):
        ref = _ft_ref(user, name)
    elif match := _STAGE_REF.match(name):
        ref = _stage_ref(user, match.group("model_id"), match.group("stage"))
    else:
        ref = name
    resolved = model_resolve(user=user, ref=ref, field="model")
    if resolved.task_type == "classification":
        raise InvalidInput(f"model: {name} is a classification model; it cannot generate text",
                           details={"param": "model"})  # fmt: skip
    return resolved.path


def served_models(*, user) -> list[dict]:
    """GET /v1/models: what `user` may name as `model` here, as OpenAI model objects."""
    from experiments.models import JobStatus
    from experiments.openai_compat.services import jobs_visible_to
    from models_registry.selectors import versions_visible_to

    objects = []
    for name, path in builtin_models().items():
        if name == "t4dm-tiny" and (path / "config.json").is_file():
            objects.append(_model_object(name, created=int(path.stat().st_mtime), owned_by="t4dm"))
    for version in versions_visible_to(user).exclude(config__task_type="classification").order_by("pk"):
        owner = (
            version.registered.owner.username if version.registered and version.registered.owner else "t4dm"
        )
        created = int(version.created_at.timestamp()) if getattr(version, "created_at", None) else 0
        objects.append(
            _model_object(f"{version.model_id}@{version.version}", created=created, owned_by=owner)
        )
    for ftjob in jobs_visible_to(user).filter(job__status=JobStatus.SUCCEEDED).order_by("pk"):
        objects.append(
            _model_object(
                _ft_name(ftjob), created=int(ftjob.created_at.timestamp()), owned_by=ftjob.job.owner.username
            )
        )
    return objects


def served_model_get(*, user, model: str) -> dict:
    served_model_path(user=user, model=model)  # 404 unless the user may use it
    for found in served_models(user=user):
        if found["id"] == model:
            return found
    return _model_object(model, created=0, owned_by=getattr(user, "username", "t4dm"))


def _model_object(name: str, *, created: int, owned_by: str) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by}


# --- what is asked ----------------------------------------------------------------------------------


@dataclass
class Sampling:
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: str | list[str] | None
    seed: int | None
    n: int | None


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise InvalidInput(f"{where}: only text parts are supported here", details={"param": where})
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise InvalidInput(f"{where}: must be a string or a list of text parts", details={"param": where})


def chat_messages(messages: list[dict]) -> list[dict[str, str]]:
    if not messages:
        raise InvalidInput("messages: must hold at least one message", details={"param": "messages"})
    out = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise InvalidInput(f"messages[{i}].role: {role!r} is not supported here (system, user, assistant)",
                               details={"param": f"messages[{i}].role"})  # fmt: skip
        out.append({"role": role, "content": _text_of(message.get("content"), f"messages[{i}].content")})
    return out


def completion_prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidInput("prompt: give one string (batches of prompts and token lists are not supported here)",
                           details={"param": "prompt"})  # fmt: skip
    return prompt


def sampling_spec(sampling: Sampling) -> dict[str, Any]:
    def check(name: str, value, low, high):
        if value is not None and not low <= value <= high:
            raise InvalidInput(f"{name}: must be between {low} and {high}", details={"param": name})

    check("max_tokens", sampling.max_tokens, 1, settings.SERVING_MAX_TOKENS)
    check("temperature", sampling.temperature, 0, 2)
    check("top_p", sampling.top_p, 0, 1)
    if sampling.n not in (None, 1):
        raise InvalidInput("n: only 1 is supported here", details={"param": "n"})
    stop = [sampling.stop] if isinstance(sampling.stop, str) else list(sampling.stop or [])
    if len(stop) > 4:
        raise InvalidInput("stop: at most 4 sequences", details={"param": "stop"})
    return {
        "max_tokens": sampling.max_tokens or min(256, settings.SERVING_MAX_TOKENS),
        "temperature": 1.0 if sampling.temperature is None else float(sampling.temperature),
        "top_p": 1.0 if sampling.top_p is None else float(sampling.top_p),
        "stop": stop,
        "seed": sampling.seed,
    }


# --- the round trip ---------------------------------------------------------------------------------


def _closed_key(channel: str) -> str:
    return f"t4dm:serving:closed:{channel}"


def reply_channel(reply: str) -> str:
    """The channel a worker's reply token names; signing.BadSignature for a forged or stale token."""
    return signing.loads(reply, salt=REPLY_SALT, max_age=REPLY_MAX_AGE_S)["c"]


async def reply_deliver(*, reply: str, events: list) -> int:
    """POST /v1/serving/events/: pass a worker's events to the waiting request. 204, 403 for a bad
    token, 410 when the request has gone (the worker then stops generating for it)."""
    from channels.layers import get_channel_layer

    try:
        channel = reply_channel(reply)
    except signing.BadSignature:
        return 403
    if await cache.aget(_closed_key(channel)):
        return 410
    await get_channel_layer().send(channel, {"type": "serving.events", "events": events})
    return 204


def _enqueue(spec: dict, reply: str) -> None:
    from models_registry.tasks import serving_generate

    serving_generate.apply_async(
        (spec, reply), queue=settings.SERVING_QUEUE, expires=settings.SERVING_TIMEOUT_S
    )


class Generation:
    """One request's events from the worker: `start()` waits for the first (raising the worker's error
    as a DomainError), then `events()` yields the rest; `close()` tells the worker to stop."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.channel = ""
        self.pending: list[dict] = []
        self.closed = False
        self.prompt_tokens = 0

    async def _next_batch(self) -> list[dict]:
        from channels.layers import get_channel_layer

        try:
            message = await asyncio.wait_for(
                get_channel_layer().receive(self.channel), timeout=settings.SERVING_TIMEOUT_S
            )
        except TimeoutError:
            raise ServingUnavailable(
                f"no serving worker answered within {settings.SERVING_TIMEOUT_S:g} s; is a worker consuming "
                f"the {settings.SERVING_QUEUE!r} queue running?"
            ) from None
        return list(message.get("events") or [])

    async def start(self) -> dict:
        from channels.layers import get_channel_layer

        self.channel = await get_channel_layer().new_channel("serving.")
        reply = signing.dumps({"c": self.channel, "n": secrets.token_hex(4)}, salt=REPLY_SALT)
        await sync_to_async(_enqueue, thread_sensitive=False)(self.spec, reply)
        try:
            while not self.pending:
                self.pending = await self._next_batch()
        except BaseException:  # a timeout, or the client left: a worker that takes it later stops at once
            await self.close()
            raise
        first = self.pending.pop(0)
        if first["type"] == "error":
            await self.close()
            raise GenerationError(first)
        self.prompt_tokens = int(first.get("prompt_tokens") or 0)
        return first

    async def events(self) -> AsyncIterator[dict]:
        try:
            while True:
                while self.pending:
                    event = self.pending.pop(0)
                    yield event
                    if event["type"] in ("done", "error"):
                        return
                self.pending = await self._next_batch()
        finally:
            await self.close()

    async def close(self) -> None:
        if not self.closed and self.channel:
            self.closed = True
            await cache.aset(
                _closed_key(self.channel), 1, timeout=max(60, int(settings.SERVING_TIMEOUT_S * 2))
            )


# --- OpenAI objects ---------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def chat_completion_object(*, id: str, model: str, text: str, done: dict, created: int) -> dict:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": done["finish_reason"],
            }
        ],
        "usage": usage(done["prompt_tokens"], done["completion_tokens"]),
    }


def chat_chunk(*, id: str, model: str, created: int, delta: dict, finish_reason: str | None = None,
               usage_: dict | None = None, choices: bool = True) -> dict:  # fmt: skip
    chunk = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        if choices
        else [],
    }
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk


def text_completion_object(*, id: str, model: str, text: str, finish_reason: str | None, created: int,
                           usage_: dict | None = None) -> dict:  # fmt: skip
    body = {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body


def now() -> int:
    return int(time.time())
