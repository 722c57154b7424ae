"""Serving endpoints on the OpenAI-compatible API (/v1/): chat completions, completions, models; and
the worker's reply endpoint. Thin: parse, call models_registry.serving.services, render (SSE when
`stream: true`: `data: {chunk}` lines, then `data: [DONE]`)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from ninja import Schema
from pydantic import ConfigDict

from experiments.openai_compat.api import openai_api
from models_registry.serving import services
from t4dm_site.errors import DomainError, InvalidInput


class StreamOptions(Schema):
    include_usage: bool | None = None


class _GenerationIn(Schema):
    model_config = ConfigDict(extra="forbid")  # OpenAI answers 400 to an argument it does not know

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: Any = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    def sampling(self, max_tokens: int | None = None) -> dict:
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise InvalidInput(
                    f"{name}: not supported here (give 0 or leave it out)", details={"param": name}
                )
        if self.logprobs:
            raise InvalidInput("logprobs: not supported here", details={"param": "logprobs"})
        return services.sampling_spec(
            services.Sampling(max_tokens=max_tokens or self.max_tokens, temperature=self.temperature,
                              top_p=self.top_p, stop=self.stop, seed=self.seed, n=self.n)
        )  # fmt: skip


class ChatCompletionIn(_GenerationIn):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = None
    store: bool | None = None


class CompletionIn(_GenerationIn):
    prompt: str | list[str]
    echo: bool | None = None
    suffix: str | None = None


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _stream_response(chunks) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each chunk on at once
    return response


async def _stream(generation: services.Generation, render_delta, render_end):
    """SSE bytes: a chunk per batch of tokens the worker sent, the end chunk(s), [DONE]. An error after
    the first byte (the worker died, a timeout) goes out as an `error` event, as OpenAI does."""
    try:
        async for event in generation.events():
            if event["type"] == "delta":
                yield _sse(render_delta(event["text"]))
            elif event["type"] == "done":
                for chunk in render_end(event):
                    yield _sse(chunk)
            elif event["type"] == "error":
                yield _sse({"error": {"message": event.get("message"), "type": "api_error", "param": None,
                                      "code": event.get("code")}})  # fmt: skip
                return
        yield b"data: [DONE]\n\n"
    except DomainError as exc:
        yield _sse({"error": {"message": exc.message, "type": "api_error", "param": None, "code": exc.code}})


async def _collect(generation: services.Generation) -> tuple[str, dict]:
    text = []
    async for event in generation.events():
        if event["type"] == "delta":
            text.append(event["text"])
        elif event["type"] == "done":
            return "".join(text), event
        elif event["type"] == "error":
            raise services.GenerationError(event)
    raise services.ServingUnavailable("the worker stopped before the completion was done")


@openai_api.post("/chat/completions", tags=["serving"])
async def chat_completions(request: HttpRequest, payload: ChatCompletionIn):
    """Chat with a model you may use (`model_id@1.0.0`, `model_id@production`, `ft:…`); `stream` for SSE."""
    spec = {
        "kind": "chat",
        "messages": services.chat_messages(payload.messages),
        **payload.sampling(payload.max_completion_tokens),
    }
    spec["path"] = await sync_to_async(services.served_model_path)(user=request.auth, model=payload.model)
    generation = services.Generation(spec)
    await generation.start()
    id, created, model = services.new_id("chatcmpl"), services.now(), payload.model
    if not payload.stream:
        text, done = await _collect(generation)
        return services.chat_completion_object(id=id, model=model, text=text, done=done, created=created)
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)

    def delta(text: str) -> dict:
        return services.chat_chunk(id=id, model=model, created=created, delta={"content": text})

    def end(done: dict) -> list[dict]:
        chunks = [services.chat_chunk(id=id, model=model, created=created, delta={},
                                      finish_reason=done["finish_reason"])]  # fmt: skip
        if include_usage:
            chunks.append(services.chat_chunk(id=id, model=model, created=created, delta={}, choices=False,
                usage_=services.usage(done["prompt_tokens"], done["completion_tokens"])))  # fmt: skip
        return chunks

    async def chunks():
        yield _sse(services.chat_chunk(id=id, model=model, created=created,
                                       delta={"role": "assistant", "content": ""}))  # fmt: skip
        async for piece in _stream(generation, delta, end):
            yield piece

    return _stream_response(chunks())


@openai_api.post("/completions", tags=["serving"])
async def completions(request: HttpRequest, payload: CompletionIn):
    """Complete a prompt with a model you may use; `stream` for SSE."""
    if payload.echo or payload.suffix:
        raise InvalidInput(
            "echo and suffix are not supported here", details={"param": "echo" if payload.echo else "suffix"}
        )
    spec = {"kind": "completion", "prompt": services.completion_prompt(payload.prompt), **payload.sampling()}
    spec["path"] = await sync_to_async(services.served_model_path)(user=request.auth, model=payload.model)
    generation = services.Generation(spec)
    await generation.start()
    id, created, model = services.new_id("cmpl"), services.now(), payload.model
    if not payload.stream:
        text, done = await _collect(generation)
        return services.text_completion_object(
            id=id, model=model, text=text, finish_reason=done["finish_reason"], created=created,
            usage_=services.usage(done["prompt_tokens"], done["completion_tokens"]),
        )  # fmt: skip
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)

    def delta(text: str) -> dict:
        return services.text_completion_object(
            id=id, model=model, text=text, finish_reason=None, created=created
        )

    def end(done: dict) -> list[dict]:
        chunks = [services.text_completion_object(id=id, model=model, text="", created=created,
                                                  finish_reason=done["finish_reason"])]  # fmt: skip
        if include_usage:
            last = services.text_completion_object(id=id, model=model, text="", finish_reason=None, created=created,
                usage_=services.usage(done["prompt_tokens"], done["completion_tokens"]))  # fmt: skip
            last["choices"] = []
            chunks.append(last)
        return chunks

    return _stream_response(_stream(generation, delta, end))


@openai_api.get("/models", tags=["serving"])
def model_list(request: HttpRequest):
    """The models you may name in completions: your versions, your succeeded fine-tuning jobs, t4dm-tiny."""
    return {"object": "list", "data": services.served_models(user=request.auth)}


@openai_api.get("/models/{model}", tags=["serving"])
def model_retrieve(request: HttpRequest, model: str):
    """One model you may use (404 for anyone else's)."""
    return services.served_model_get(user=request.auth, model=model)


@csrf_exempt
@require_POST
async def serving_events(request: HttpRequest) -> HttpResponse:
    """A serving worker's events for one request; authenticated by the request's signed reply token."""
    try:
        body = json.loads(request.body or b"{}")
        reply, events = body["reply"], body["events"]
        if not isinstance(reply, str) or not isinstance(events, list):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": {"code": "invalid_input", "message": 'send {"reply": ..., "events": [...]}'}},
                            status=400)  # fmt: skip
    status = await services.reply_deliver(reply=reply, events=events)
    return HttpResponse(status=status)
