"""Request/response schemas of the integrations API (explicit fields)."""

from __future__ import annotations

from typing import Any

from ninja import Field, Schema


class SubscriptionIn(Schema):
    url: str = Field(..., min_length=1, max_length=500)
    event_types: list[str] = Field(default_factory=lambda: ["*"])
    secret: str | None = Field(None, max_length=200)  # None: a generated one, shown once in the answer
    active: bool = True
    description: str = Field("", max_length=200)


class SubscriptionPatch(Schema):
    url: str | None = Field(None, max_length=500)
    event_types: list[str] | None = None
    secret: str | None = Field(None, max_length=200)
    active: bool | None = None
    description: str | None = Field(None, max_length=200)


class SubscriptionOut(Schema):
    id: str
    url: str
    event_types: list[str]
    active: bool
    description: str
    created_at: str
    secret: str | None


class DeliveryOut(Schema):
    id: str
    delivery_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    payload: dict[str, Any]
    created_at: str
    last_attempt_at: str | None
    delivered_at: str | None


class FinetuneConfigOut(Schema):
    source: str
    path: str | None
    finetune: dict[str, Any]
    sources: dict[str, str]
