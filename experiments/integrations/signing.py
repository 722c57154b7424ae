"""Webhook signatures: ``X-T4DM-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>``.

Receivers verify with :func:`verify` (plain Python, no Django needed)::

    from experiments.integrations.signing import verify
    ok = verify(secret, request_body_bytes, request.headers["X-T4DM-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-T4DM-Signature"
EVENT_HEADER = "X-T4DM-Event"
DELIVERY_HEADER = "X-T4DM-Delivery"


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def sign(secret: str | bytes, body: str | bytes) -> str:
    """The header value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(_as_bytes(secret), _as_bytes(body), hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: str | bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of exactly these body bytes (constant-time compare)."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())
