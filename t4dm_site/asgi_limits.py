"""Request-body limits and the upload gate, placed where they bite: before a body is buffered or parsed.

Two layers, both installed by t4dm_site/asgi.py:

1. **In daphne's HTTP layer (Twisted)**, `install_daphne_limits()` adjusts daphne's request class:
   - Twisted's `Request.requestReceived` parses every `multipart/form-data` POST body into
     `request.args` (`twisted.web.http._getMultiPartArgs`: the whole body read into memory, then
     parsed by the stdlib email parser: ~11x the body size in RSS) before daphne hands the request to
     the application, which never uses those args. The parsing is switched off
     (`_parsePOSTFormSubmission = False`, Twisted's own switch).
   - A body whose Content-Length is over T4DM_MAX_UPLOAD_BYTES is refused with 413 as soon as the
     headers are in, and a chunked body is refused once its byte count passes the limit; the rest is
     not stored.
   - A body-carrying request without any credential (no `Authorization: Bearer`, no session cookie)
     that is multipart or over T4DM_ANONYMOUS_BODY_BYTES is refused with 401 before its body is read.
   - daphne copies the whole body into the application's input queue at once; here the body stays in
     Twisted's spool file (a temporary file past 100 KB) and the application reads it chunk by chunk.
2. **In the ASGI application** (`BodyLimitMiddleware`, in front of Django), for any ASGI server:
   Content-Length over the limit → 413, `multipart/form-data` without a boundary → 400, an upload
   whose credential is not valid (unknown or revoked token, expired session) → 401, all before
   `receive()` is called; and the streamed bytes are counted, so a body that grows past the limit is
   cut off with 413.

Errors use the API's shape `{"error": {"code", "message", "details"}}`. Behind a reverse proxy, set its
body limit too (docs/nginx.conf: `client_max_body_size`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from importlib import import_module

from django.conf import settings

from t4dm_site.ratelimit import bearer_token

logger = logging.getLogger(__name__)

BODY_METHODS = {b"POST", b"PUT", b"PATCH", "POST", "PUT", "PATCH"}
DEFAULT_ANONYMOUS_BODY_BYTES = 1024 * 1024


def upload_limit() -> int:
    return int(getattr(settings, "MAX_UPLOAD_BYTES", 0) or 0)


def anonymous_limit() -> int:
    return int(getattr(settings, "ANONYMOUS_BODY_BYTES", DEFAULT_ANONYMOUS_BODY_BYTES))


def error_body(code: str, message: str, **details) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()


def too_large(length: int | None, limit: int) -> tuple[int, bytes]:
    said = f"the request has {length} bytes" if length is not None else "the request body is too large"
    return 413, error_body(
        "payload_too_large", f"{said}; the limit is {limit} (T4DM_MAX_UPLOAD_BYTES)", limit=limit
    )


def not_signed_in() -> tuple[int, bytes]:
    return 401, error_body(
        "not_authenticated",
        "uploads need a valid API token (Authorization: Bearer ...) or a signed-in session; "
        "the body was not read",
    )


def no_boundary() -> tuple[int, bytes]:
    return 400, error_body(
        "invalid_multipart",
        "multipart/form-data needs a boundary parameter in its Content-Type "
        '(e.g. multipart/form-data; boundary="x"); let your HTTP client build the body',
    )


def _media_type(content_type: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    main, *params = content_type.split(b";")
    parsed = {}
    for param in params:
        key, _, value = param.strip().partition(b"=")
        parsed[key.strip().lower()] = value.strip().strip(b'"')
    return main.strip().lower(), parsed


def _has_credential(authorization: bytes | None, cookie: bytes | None) -> bool:
    if authorization and bearer_token(authorization.decode("latin-1")):
        return True
    name = settings.SESSION_COOKIE_NAME.encode()
    for part in (cookie or b"").split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name and value:
            return True
    return False


def _gated(method, content_type: bytes, length: int | None) -> bool:
    """Does this request need a credential before its body is read?"""
    if method not in BODY_METHODS:
        return False
    if _media_type(content_type)[0] == b"multipart/form-data":
        return True
    return length is None or length > anonymous_limit()


# --- 1. daphne / Twisted --------------------------------------------------------------------------------


class _SpooledBody:
    """Stands in for Twisted's request content while daphne starts the application: daphne's loop gets
    an empty body at once (so it queues nothing), the application then reads the real spool lazily."""

    def __init__(self, real):
        self.real = real

    @property
    def closed(self) -> bool:
        return self.real.closed

    def seek(self, *args):
        return self.real.seek(*args)

    def tell(self):
        return self.real.tell()

    def close(self):
        return self.real.close()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.real.read()  # daphne's websocket upgrade re-injects the raw request
        return b""


class _LazyBodyQueue(asyncio.Queue):
    """The application's input queue: `http.request` chunks come from the spool file when asked for."""

    def __init__(self, content, buffer_size: int):
        super().__init__()
        self._content = content
        self._buffer_size = buffer_size
        self._placeholder_taken = False

    async def get(self):
        if self._content is None:
            return await super().get()
        if not self._placeholder_taken:
            message = await super().get()
            if message.get("type") != "http.request":
                self._content = None
                return message
            self._placeholder_taken = True
        try:
            chunk = self._content.read(self._buffer_size)
        except ValueError:  # the connection went away and Twisted closed the spool file
            self._content = None
            return {"type": "http.disconnect"}
        more = len(chunk) == self._buffer_size
        if not more:
            self._content = None
        return {"type": "http.request", "body": chunk, "more_body": more}


def install_daphne_limits() -> bool:
    """Patch daphne's request class and server once (no-op when daphne is not importable)."""
    try:
        from daphne import http_protocol, server
    except ImportError:  # pragma: no cover - daphne is a dependency
        return False
    request_class = http_protocol.WebRequest
    if getattr(request_class, "_t4dm_limits", False):
        return True

    original_init = request_class.__init__
    original_got_length = request_class.gotLength
    original_chunk = request_class.handleContentChunk
    original_received = request_class.requestReceived
    original_process = request_class.process
    original_create = server.Server.create_application

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        # Twisted's own switch: do not parse form bodies into request.args (daphne never uses them).
        self._parsePOSTFormSubmission = False
        self._t4dm_refused = False
        self._t4dm_received = 0

    def _refuse(self, status: int, body: bytes) -> None:
        self._t4dm_refused = True
        reason = {400: b"Bad Request", 401: b"Unauthorized", 413: b"Payload Too Large"}[status]
        transport = self.channel.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (status, reason, len(body)) + body
        )
        transport.loseConnection()
        try:
            self.content.close()
        except Exception:  # noqa: BLE001 - already closed
            pass

    def gotLength(self, length):  # noqa: N802 - Twisted's name
        original_got_length(self, length)
        method = getattr(self.channel, "_command", b"") or b""
        headers = self.requestHeaders
        limit = upload_limit()
        if limit and length is not None and length > limit:
            _refuse(self, *too_large(length, limit))
            return
        content_type = (headers.getRawHeaders(b"content-type") or [b""])[0]
        if _gated(method.upper(), content_type, length) and not _has_credential(
            (headers.getRawHeaders(b"authorization") or [None])[0],
            b";".join(headers.getRawHeaders(b"cookie") or []),
        ):
            _refuse(self, *not_signed_in())
            return
        media, params = _media_type(content_type)
        if method.upper() in BODY_METHODS and media == b"multipart/form-data" and not params.get(b"boundary"):
            _refuse(self, *no_boundary())

    def handleContentChunk(self, data):  # noqa: N802 - Twisted's name
        if self._t4dm_refused:
            return
        self._t4dm_received += len(data)
        limit = upload_limit()
        if limit and self._t4dm_received > limit:
            _refuse(self, *too_large(None, limit))
            return
        original_chunk(self, data)

    def requestReceived(self, command, path, version):  # noqa: N802 - Twisted's name
        if self._t4dm_refused:
            return
        return original_received(self, command, path, version)

    def process(self):
        if not isinstance(self.content, _SpooledBody):
            self.content = _SpooledBody(self.content)
        return original_process(self)

    def create_application(self, protocol, scope):
        # daphne's Server.create_application, with an input queue that reads the body lazily.
        content = getattr(protocol, "content", None)
        if scope.get("type") != "http" or not isinstance(content, _SpooledBody):
            return original_create(self, protocol, scope)
        assert "application_instance" not in self.connections[protocol]
        input_queue = _LazyBodyQueue(content.real, self.request_buffer_size)
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    request_class.__init__ = __init__
    request_class.gotLength = gotLength
    request_class.handleContentChunk = handleContentChunk
    request_class.requestReceived = requestReceived
    request_class.process = process
    server.Server.create_application = create_application
    request_class._t4dm_limits = True
    return True


# --- 2. ASGI --------------------------------------------------------------------------------------------


def _credential_valid(authorization: bytes | None, cookie: bytes | None) -> bool:
    """A bearer token some endpoint accepts (API token, worker secret, job token) or a live session."""

    raw = bearer_token(authorization.decode("latin-1")) if authorization else None
    if raw:
        from t4dm_site.services import api_token_authenticate

        if api_token_authenticate(raw=raw) is not None:
            return True
        from t4dm_site.auth import job_token_auth, worker_secret_valid

        if worker_secret_valid(raw):
            return True
        try:
            return job_token_auth.authenticate(None, raw) is not None
        except Exception:  # noqa: BLE001 - a malformed token is simply not valid
            return False
    name = settings.SESSION_COOKIE_NAME
    for part in (cookie or b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            from django.contrib.auth import SESSION_KEY, get_user_model

            store = import_module(settings.SESSION_ENGINE).SessionStore(value)
            user_id = store.get(SESSION_KEY)
            if user_id is not None and get_user_model().objects.filter(pk=user_id, is_active=True).exists():
                return True
    return False


class BodyLimitMiddleware:
    """ASGI middleware in front of the HTTP application (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", []):
            headers[name.lower()] = headers[name.lower()] + b";" + value if name.lower() in headers else value
        limit = upload_limit()
        length_text = headers.get(b"content-length", b"").strip()
        length = int(length_text) if length_text.isdigit() else None
        if limit and length is not None and length > limit:
            return await _respond(send, *too_large(length, limit))
        content_type = headers.get(b"content-type", b"")
        media, params = _media_type(content_type)
        if media == b"multipart/form-data" and not params.get(b"boundary"):
            return await _respond(send, *no_boundary())
        if _gated(scope["method"], content_type, length):
            from channels.db import database_sync_to_async

            valid = await database_sync_to_async(_credential_valid)(
                headers.get(b"authorization"), headers.get(b"cookie")
            )
            if not valid:
                return await _respond(send, *not_signed_in())
        if not limit:
            return await self.app(scope, receive, send)

        state = {"received": 0, "over": False, "started": False}

        async def counted_receive():
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            if message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if state["over"] and not state["started"]:
            await _respond(send, *too_large(None, limit))


async def _respond(send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
