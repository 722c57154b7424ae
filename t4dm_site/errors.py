"""Domain exceptions. Services raise them with a message a person can act on; the API maps each to
one HTTP status and one JSON error shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code


class InvalidInput(DomainError):
    status = 400
    code = "invalid_input"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


INTERNAL_ERROR_MESSAGE = "internal server error: the failure was logged on the server"


def report_unhandled(request, exc: BaseException) -> None:
    """An exception no handler turned into a 4xx: its traceback goes to the server log (django.request,
    as Django logs a 500) and to Django's error reporting (got_request_exception), never to the client.
    The APIs answer it with their own JSON 500 body, with DEBUG on (the embedded default) as with it off."""
    import logging

    from django.core.signals import got_request_exception

    logging.getLogger("django.request").error(
        "Internal Server Error: %s",
        getattr(request, "path", "?"),
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"status_code": 500, "request": request},
    )
    got_request_exception.send(sender=None, request=request)
