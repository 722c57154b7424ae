"""Registry services: versions (auto_version), stage transitions behind the deployment gate,
sample-output sign-offs, model cards and exports.

Semver rule of auto_version, against the newest version of the same model_id:

- no version yet                                   → 1.0.0
- a different base model or task type              → major: (X+1).0.0
- the same base and task, a different dataset version → minor: X.(Y+1).0
- only hyperparameters / approach differ (or a re-run) → patch: X.Y.(Z+1)

A model_id names what the model is for: by default `t4dm-<dataset name>`, so a new version of the
same dataset is a minor bump and a new base model a major one.

Model ids are a namespace per owner: a version is always registered under a model of its job's
owner (unique (owner, model_id)), so two researchers whose datasets share a name get two models, and
one's version numbers and reasons never mention the other's versions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from experiments.models import JobStatus, TrainingJob
from models_registry.cards import model_card_render
from models_registry.gates import SEMVER, gate_check, gate_failures, version_evaluation
from models_registry.models import (
    ModelExport,
    ModelVersion,
    RegisteredModel,
    SampleReviewSignoff,
    Stage,
    StageTransition,
)
from t4dm_site.errors import Conflict, Forbidden, InvalidInput
from t4dm_site.events import ModelVersionCreated, ModelVersionStageChanged, publish
from t4dm_site.roles import is_admin

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "t4dm-finetune"
OPENAI_PREFIX = "openai://"  # a job's final_model_path when an OpenAI fine-tuning job trained it
DEFAULT_VERSIONING = {"auto_version": True, "compare_to_base": True}

# Allowed moves between stages. Production is reached only from staging; leaving production (or being
# replaced there) archives or demotes.
TRANSITIONS: dict[str, set[str]] = {
    Stage.NONE: {Stage.STAGING, Stage.ARCHIVED},
    Stage.STAGING: {Stage.PRODUCTION, Stage.ARCHIVED, Stage.NONE},
    Stage.PRODUCTION: {Stage.STAGING, Stage.ARCHIVED},
    Stage.ARCHIVED: {Stage.STAGING},
}


class GateFailed(Conflict):
    code = "gate_failed"


def versioning_settings() -> dict:
    return {**DEFAULT_VERSIONING, **getattr(settings, "T4DM_VERSIONING", {})}


def semver_key(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(version)
    return tuple(int(part) for part in match.groups()) if match else (-1, -1, -1)


DATA_FILE_EXTENSIONS = {"jsonl", "json", "csv", "tsv", "parquet", "txt", "gz", "zip"}


def default_model_id(job: TrainingJob) -> str:
    name = job.config.dataset_version.dataset.name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and extension.lower() in DATA_FILE_EXTENSIONS:  # "support.jsonl" → "support"
        name = stem
    slug = slugify(name) or "model"
    return slug if slug.startswith("t4dm-") else f"t4dm-{slug}"


def next_version(
    *, previous: ModelVersion | None, base_model: str, task_type: str, dataset_version_id
) -> tuple[str, str]:
    """(version, why) by the module's semver rule."""
    if previous is None:
        return "1.0.0", "first version of this model"
    major, minor, patch = semver_key(previous.version)
    previous_task = previous.config.task_type if previous.config else None
    if previous.base_model != base_model or (previous_task is not None and previous_task != task_type):
        changed = "base model" if previous.base_model != base_model else "task type"
        return f"{major + 1}.0.0", f"major: new {changed} since {previous.version}"
    if previous.dataset_version_id != dataset_version_id:
        return f"{major}.{minor + 1}.0", f"minor: new dataset version since {previous.version}"
    return f"{major}.{minor}.{patch + 1}", f"patch: same base, task and data as {previous.version}"


def _lock_model(*, owner, model_id: str) -> RegisteredModel:
    """Row lock on the owner's model_id (created when new): serializes numbering and promotions
    (SQLite: the IMMEDIATE transaction already holds the database's write lock)."""
    RegisteredModel.objects.get_or_create(owner=owner, model_id=model_id)
    return RegisteredModel.objects.select_for_update().get(owner=owner, model_id=model_id)


def _lock_registered(registered_pk: int) -> RegisteredModel:
    return RegisteredModel.objects.select_for_update().get(pk=registered_pk)


def _newest(registered: RegisteredModel) -> ModelVersion | None:
    versions = list(ModelVersion.objects.filter(registered=registered).select_related("config"))
    return max(versions, key=lambda v: semver_key(v.version)) if versions else None


@transaction.atomic
def model_version_create(
    *, job: TrainingJob, model_id: str | None = None, created_by: str = SYSTEM_ACTOR, automatic: bool = False
) -> ModelVersion:
    """Register a succeeded job's final model as the next version of `model_id` in the namespace of
    the job's owner (whoever asks: an admin registering someone's job files it under that owner).
    A provider's model (`openai://<model>`) is registered with its provider and the remote model name."""
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"{job.public_id} is {job.status}; only a succeeded job's model can be versioned")
    if not job.final_model_path:
        raise Conflict(f"{job.public_id} reported no final model folder")
    config = job.config
    model_id = (model_id or default_model_id(job)).strip()
    if not model_id or slugify(model_id) != model_id.lower():
        raise InvalidInput(f"model_id {model_id!r} must be letters, digits and dashes, e.g. t4dm-knowledge")
    registered = _lock_model(owner=job.owner, model_id=model_id)
    version, why = next_version(
        previous=_newest(registered),
        base_model=config.model_base,
        task_type=config.task_type,
        dataset_version_id=config.dataset_version_id,
    )
    provider, artifact_path = "local", job.final_model_path
    if artifact_path.startswith(OPENAI_PREFIX):
        provider, artifact_path = "openai", artifact_path.removeprefix(OPENAI_PREFIX)
    best = job.checkpoints.filter(is_best=True).order_by("-step").first()
    final_loss = (job.latest_metrics or {}).get("loss")
    created = ModelVersion.objects.create(
        registered=registered,
        model_id=model_id,
        version=version,
        version_reason=why,
        base_model=config.model_base,
        provider=provider,
        dataset_version=config.dataset_version,
        config=config,
        job=job,
        checkpoint=best,
        final_loss=final_loss if isinstance(final_loss, int | float) else None,
        artifact_path=artifact_path,
        created_by=created_by,
    )
    evaluation = version_evaluation(created)
    if evaluation is not None:
        created.evaluation = evaluation
        created.evaluation_metrics = evaluation.metrics or {}
    created.model_card = model_card_render(created, registered)
    created.save(update_fields=["evaluation", "evaluation_metrics", "model_card"])
    StageTransition.objects.create(
        version=created,
        from_stage=Stage.NONE,
        to_stage=Stage.NONE,
        actor_name=created_by,
        reason=f"registered ({why})",
    )
    publish(ModelVersionCreated(version_pk=created.pk, automatic=automatic))
    return created


def model_version_auto_create(*, job: TrainingJob) -> ModelVersion | None:
    """auto_version: a succeeded job gets a version once (idempotent); None when auto_version is off."""
    if not versioning_settings()["auto_version"]:
        return None
    existing = job.model_versions.order_by("created_at").first()
    if existing is not None:
        return existing
    # compare_to_base: a subscriber of the automatic version's ModelVersionCreated event
    return model_version_create(job=job, automatic=True)


def _actor_name(actor) -> str:
    return getattr(actor, "username", None) or SYSTEM_ACTOR


@transaction.atomic
def model_version_transition(
    *,
    version: ModelVersion,
    to_stage: str,
    actor,
    reason: str = "",
    override: bool = False,
    thresholds: dict | None = None,
) -> ModelVersion:
    """Move a version to another stage and record it. Production needs the gate to pass (or an
    admin override with a reason); promoting a version archives the model_id's current production one."""
    if to_stage not in Stage.values:
        raise InvalidInput(f"unknown stage {to_stage!r}; choose one of {', '.join(Stage.values)}")
    registered = _lock_registered(version.registered_id)
    # Lock every version of the model: two promotions at once are served one after the other, and
    # the second sees the first's result.
    siblings = {v.pk: v for v in ModelVersion.objects.select_for_update().filter(registered=registered)}
    version = siblings[version.pk]
    current = version.stage
    if to_stage == current:
        raise Conflict(f"{version.ref} is already in {current}")
    if to_stage not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise Conflict(
            f"{version.ref} cannot move from {current} to {to_stage}; from {current} it can go to {allowed}"
        )
    if override and not is_admin(actor):
        raise Forbidden("only an admin can override the deployment gate")
    gate: list[dict] = []
    if to_stage == Stage.PRODUCTION:
        # The strictest of the project's, the model's and the request's thresholds applies.
        gate = gate_check(version=version, thresholds=thresholds, model_thresholds=registered.thresholds)
        failing = gate_failures(gate)
        if failing and not override:
            raise GateFailed(
                f"{version.ref} cannot go to production; failing checks: "
                + "; ".join(item["label"] for item in failing),
                details={"failing": failing, "gate": gate},
            )
        if failing and not reason.strip():
            raise InvalidInput("an override of the deployment gate needs a reason")
        gate = [*gate, _second_person(version, actor, override=override)]
        for other in siblings.values():
            if other.pk != version.pk and other.stage == Stage.PRODUCTION:
                _record(other, Stage.ARCHIVED, actor, f"replaced in production by {version.version}")
    else:
        override = False
    _record(version, to_stage, actor, reason, override=override, gate=gate)
    return version


class SecondSignoffRequired(Conflict):
    code = "second_signoff_required"


def _second_person(version: ModelVersion, actor, *, override: bool) -> dict:
    """The four-eyes rule (settings.PROMOTION_PEOPLE): the promoter and the people who signed off the
    sample outputs must be that many different people. Only an admin's override (with its reason, both
    recorded) lifts it. Returns the item kept in the transition's gate list."""
    needed = settings.PROMOTION_PEOPLE
    reviewers = sorted({s.reviewer_name for s in version.signoffs.all()})
    people = {*reviewers, _actor_name(actor)}
    detail = f"signed off by {', '.join(reviewers) or 'nobody'}; promoted by {_actor_name(actor)}"
    passed = len(people) >= needed
    if not passed and not override:
        raise SecondSignoffRequired(
            f"{version.ref} cannot go to production: it needs {needed} different people (the promoter and "
            f"the sample-output sign-offs); {detail}. Ask someone else to sign off or to promote it.",
            details={"needed": needed, "people": sorted(people)},
        )
    return {"key": "second_person_signoff", "label": "Second person's sign-off", "passed": passed,
            "detail": detail}  # fmt: skip


def _record(
    version: ModelVersion, to_stage: str, actor, reason: str, *, override: bool = False, gate=None
) -> None:
    from_stage = version.stage
    version.set_stage(to_stage)
    StageTransition.objects.create(
        version=version,
        from_stage=from_stage,
        to_stage=to_stage,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=_actor_name(actor),
        reason=reason.strip(),
        override=override,
        gate=gate or [],
    )
    publish(
        ModelVersionStageChanged(
            version_pk=version.pk, from_stage=from_stage, to_stage=to_stage, actor=_actor_name(actor)
        )
    )


@transaction.atomic
def sample_review_signoff(*, version: ModelVersion, reviewer, note: str = "") -> SampleReviewSignoff:
    """The explicit "sample outputs reviewed" record for the gate."""
    if version_evaluation(version) is None and not note.strip():
        raise InvalidInput(
            "there are no evaluated sample outputs to review; say in the note what you reviewed"
        )
    return SampleReviewSignoff.objects.create(
        version=version, reviewer=reviewer, reviewer_name=_actor_name(reviewer), note=note.strip()
    )


@transaction.atomic
def model_card_update(*, version: ModelVersion, text: str | None = None) -> ModelVersion:
    """Replace the card with `text` (a written card: kept as it is from then on), or regenerate it
    from the records when `text` is None (generated again whenever an evaluation finishes)."""
    written = text is not None
    if text is None:
        _refresh_evaluation(version)
        text = model_card_render(version, version.registered)
    version.model_card = text
    version.model_card_written = written
    version.save(update_fields=["model_card", "model_card_written", "evaluation", "evaluation_metrics"])
    return version


def _refresh_evaluation(version: ModelVersion) -> None:
    evaluation = version_evaluation(version)
    if evaluation is not None:
        version.evaluation = evaluation
        version.evaluation_metrics = evaluation.metrics or {}


def model_cards_refresh(*, evaluation) -> list[ModelVersion]:
    """An evaluation finished (or its metrics changed): the versions it evaluates take its metrics,
    and their generated cards are rendered again (a written card is left as its author wrote it; the
    gate's documentation item then says what it lacks)."""
    if evaluation.job_id is None:
        candidates = ModelVersion.objects.filter(evaluation=evaluation)
    else:
        candidates = ModelVersion.objects.filter(job_id=evaluation.job_id) | ModelVersion.objects.filter(
            evaluation=evaluation
        )
    refreshed = []
    with transaction.atomic():
        for version in candidates.select_related("registered", "job", "config", "dataset_version"):
            _refresh_evaluation(version)
            fields = ["evaluation", "evaluation_metrics"]
            if not version.model_card_written:
                version.model_card = model_card_render(version, version.registered)
                fields.append("model_card")
            version.save(update_fields=fields)
            refreshed.append(version)
    return refreshed


@transaction.atomic
def registered_model_update(
    *,
    registered: RegisteredModel | None = None,
    model_id: str | None = None,
    description: str | None = None,
    intended_use: str | None = None,
    limitations: str | None = None,
    thresholds: dict | None = None,
) -> RegisteredModel:
    if thresholds is not None:
        from experiments.training.evaluation.thresholds import parse_thresholds

        try:  # checked now: a bad shape stored here would break every later gate check
            parse_thresholds(thresholds)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_thresholds") from None
    if registered is None:  # by model_id alone: only where exactly one owner has it (tests, scripts)
        registered = RegisteredModel.objects.get(model_id=model_id)
    registered = _lock_registered(registered.pk)
    fields = {
        "description": description,
        "intended_use": intended_use,
        "limitations": limitations,
        "thresholds": thresholds,
    }
    changed = [name for name, value in fields.items() if value is not None]
    for name in changed:
        setattr(registered, name, fields[name])
    registered.save(update_fields=changed or None)
    if {"intended_use", "limitations"} & set(changed):  # generated cards quote them
        for version in registered.versions.filter(model_card_written=False):
            version.model_card = model_card_render(version, registered)
            version.save(update_fields=["model_card"])
    return registered


def model_version_export_start(*, version: ModelVersion, merge: bool, actor) -> ModelExport:
    """Queue an export (the version page's Export): a `queued` ModelExport row at once, the work on a
    worker (models_registry.tasks.export_version_task on EVAL_QUEUE, after commit), which records each
    step, then `succeeded` with the archive or `failed` with the reason."""
    from models_registry.tasks import export_version_task

    export = _export_record(version=version, merge=merge, actor=actor, status="queued")
    queue = getattr(settings, "EVAL_QUEUE", None) or settings.CELERY_TASK_DEFAULT_QUEUE
    transaction.on_commit(lambda: export_version_task.apply_async((export.pk,), queue=queue))
    return export


def model_version_export(*, version: ModelVersion, merge: bool, actor) -> ModelExport:
    """The same export in the caller's process (the API's POST .../exports): seconds for small models.
    A failure is recorded on the row and raised."""
    export = _export_record(version=version, merge=merge, actor=actor, status="running")
    model_version_export_run(export=export)
    export.refresh_from_db()
    if export.status == "failed":
        raise Conflict(f"{version.ref}: the export failed: {export.error}")
    return export


def _export_record(*, version: ModelVersion, merge: bool, actor, status: str) -> ModelExport:
    from models_registry import export

    source = Path(version.artifact_path)
    if not source.is_dir():
        raise Conflict(f"{version.ref}: the trained model folder {version.artifact_path!r} is missing")
    if merge and not export.is_adapter(source):
        merge = False  # a full fine-tune has nothing to merge
    return ModelExport.objects.create(
        version=version,
        merged=merge,
        status=status,
        progress=0.0,
        message="waiting for a worker" if status == "queued" else "starting",
        created_by=_actor_name(actor),
    )


def _export_step(export: ModelExport, *, progress: float, message: str, **fields) -> None:
    """Record where an export is (committed at once outside a transaction, so the page sees it)."""
    export.message = message[:200]
    ModelExport.objects.filter(pk=export.pk).update(progress=progress, message=message[:200], **fields)


def model_version_export_run(*, export: ModelExport) -> None:
    """Write the deployable folder (merged or adapter), tokenizer, a fresh model card and a checksum
    manifest, then a .tar.gz of it, recording each step on the row. Any error fails the row with its
    message (the page shows it)."""
    from models_registry import export as writer

    export = ModelExport.objects.select_related("version__registered", "version__config").get(pk=export.pk)
    if export.status in ("succeeded", "failed"):
        return  # a redelivered task: the export already has its outcome
    version = export.version
    export.message = ""
    ModelExport.objects.filter(pk=export.pk).update(status="running")
    try:
        source = Path(version.artifact_path)
        if not source.is_dir():
            raise Conflict(f"the trained model folder {version.artifact_path!r} is missing")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        kind = "merged" if export.merged else "adapter"
        name = f"{version.model_id}-{version.version}-{kind}"
        owner = getattr(version.registered.owner, "username", None) or "_unowned"
        folder = (
            Path(settings.ARTIFACT_ROOT)
            / "exports"
            / owner
            / version.model_id
            / version.version
            / stamp
            / name
        )
        task_type = version.config.task_type if version.config else "chat"
        writer.write_model_folder(
            source=source,
            dest=folder,
            merge=export.merged,
            task_type=task_type,
            on_step=lambda progress, message: _export_step(export, progress=progress, message=message),
        )
        _export_step(export, progress=0.7, message="writing the model card and checksums")
        card = model_card_render(version, version.registered)
        (folder / "README.md").write_text(card)
        manifest = writer.write_manifest(folder)
        _export_step(export, progress=0.8, message="packing the .tar.gz")
        archive = writer.make_archive(folder, folder.parent / f"{name}.tar.gz")
    except Exception as exc:
        log.exception("export %s of %s failed", export.pk, version.ref)
        reason = exc.message if isinstance(exc, Conflict) else f"{type(exc).__name__}: {exc}"
        message = f"{export.message}: {reason}" if export.message else reason  # the step it failed at
        ModelExport.objects.filter(pk=export.pk).update(status="failed", message="failed", error=message)
        return
    with transaction.atomic():
        if not version.model_card.strip():
            version.model_card = card
            version.save(update_fields=["model_card"])
        ModelExport.objects.filter(pk=export.pk).update(
            status="succeeded",
            progress=1.0,
            message="done",
            path=str(folder),
            archive_path=str(archive),
            manifest=manifest,
        )
