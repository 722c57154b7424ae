from __future__ import annotations

from typing import Any

from ninja import Field, Schema


class TrainingOut(Schema):
    dataset: str | None
    config: str | None
    final_loss: float | None


class VersionSchemaOut(Schema):
    """The seed's version schema."""

    model_id: str
    version: str
    base_model: str
    training: TrainingOut
    evaluation: dict[str, Any]
    created_at: str
    created_by: str


class GateItemOut(Schema):
    key: str
    label: str
    passed: bool
    detail: str


class GateOut(Schema):
    passed: bool
    items: list[GateItemOut]
    failing: list[str]


class HistoryOut(Schema):
    from_stage: str
    to_stage: str
    who: str
    when: str
    why: str
    override: bool
    failing: list[str]


class LineageOut(Schema):
    kind: str
    id: str | None
    detail: str
    url: str | None = None


class SignoffOut(Schema):
    reviewer: str
    note: str
    when: str


class ExportOut(Schema):
    export_id: int
    merged: bool
    status: str = Field(
        description="queued, running, succeeded or failed (the version page's exports run in the background)."
    )
    progress: float = Field(description="0..1")
    message: str = Field(description="The step it is at.")
    error: str
    path: str
    files: int
    created_at: str
    download_url: str


class VersionDetailOut(VersionSchemaOut):
    owner: str | None = Field(None, description="Whose namespace the model_id is in.")
    stage: str
    version_reason: str
    provider: str
    job_id: str | None
    evaluation_id: str | None
    artifact_path: str
    model_card: str
    lineage: list[LineageOut]
    history: list[HistoryOut]
    gate: GateOut
    signoffs: list[SignoffOut]
    exports: list[ExportOut]


class ModelSummaryOut(Schema):
    model_id: str
    owner: str | None = Field(None, description="Whose namespace the model_id is in.")
    description: str
    versions: int
    latest_version: str
    base_model: str
    production_version: str | None
    updated_at: str


class VersionCreateIn(Schema):
    job_id: str
    model_id: str | None = Field(
        None,
        description="In the job owner's namespace (default t4dm-<dataset name>); never another owner's model.",
    )


class StageIn(Schema):
    stage: str
    reason: str = ""
    override: bool = False
    thresholds: dict[str, Any] | None = None


class SignoffIn(Schema):
    note: str = ""


class ModelCardIn(Schema):
    text: str | None = None


class ExportIn(Schema):
    merge: bool = True


class RegisteredModelIn(Schema):
    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    thresholds: dict[str, Any] | None = None


class RegisteredModelOut(Schema):
    model_id: str
    owner: str | None = None
    description: str
    intended_use: str
    limitations: str
    thresholds: dict[str, Any]

    @staticmethod
    def resolve_owner(obj) -> str | None:
        return getattr(obj.owner, "username", None)
