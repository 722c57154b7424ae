"""Experiments and training configs: the seed's defaults and templates, the checks every config passes
(the typed spec in experiments/training/spec.py plus what needs the database: the dataset, the model's
limits), resource estimates for a config."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from django.conf import settings
from django.db import transaction

from datasets_app.models import DatasetVersion
from datasets_app.selectors import dataset_version_get, dataset_version_latest
from experiments.estimate import estimate_for, registered_workers
from experiments.models import (
    Approach,
    Experiment,
    TrainingConfig,
)
from experiments.training import spec as training_spec
from t4dm_site import finetune_config
from t4dm_site.errors import InvalidInput, NotFound

TINY_MODEL_NAME = "t4dm-tiny"

# The seed's defaults (experiments/training/spec.py, shared with the engine) and its templates.
DEFAULT_HYPERPARAMETERS = training_spec.seed_defaults()
TEMPLATES = {
    "efficient": {
        "learning_rate": 2e-5,
        "batch_size": 4,
        "gradient_accumulation": 8,
        "epochs": 3,
        "lora_r": 8,
        "lora_alpha": 16,
    },
    "quality": {
        "learning_rate": 1e-5,
        "batch_size": 2,
        "gradient_accumulation": 16,
        "epochs": 5,
        "lora_r": 32,
        "lora_alpha": 64,
    },
}
DEFAULT_CHECKPOINTING = training_spec.Checkpointing().to_dict()
DEFAULT_EARLY_STOPPING = training_spec.EarlyStopping().to_dict()
EARLY_STOPPING_METRICS = ("val_loss", "val_accuracy")
# Accepted besides the seed's hyperparameters; left out of a config unless given.
OPTIONAL_HYPERPARAMETERS = set(training_spec.OPTIONAL_HYPERPARAMETERS)
DEVICES = training_spec.DEVICES
LOCAL_APPROACHES = {Approach.LORA, Approach.FULL, Approach.QLORA, Approach.PROMPT_TUNING}
ADAPTER_APPROACHES = {Approach.LORA, Approach.QLORA}
MINILM_NAME = "all-minilm-l6-v2"
# LoRA targets tried in order when a config names none and the model has no q_proj/v_proj.
TARGET_MODULE_DEFAULTS = (["q_proj", "v_proj"], ["query", "value"], ["c_attn"], ["qkv_proj"])


def resolve_model_base(model_base: str, *, user) -> str:
    """A config's base model as ``user`` may use it (experiments.model_refs: one resolver, one refusal)."""
    from experiments.model_refs import base_model_resolve

    return base_model_resolve(user=user, name=model_base)


def experiment_create(*, owner, name: str, notes: str = "", tags: list[str] | None = None) -> Experiment:
    if not name.strip():
        raise InvalidInput("experiment name must not be empty")
    return Experiment.objects.create(owner=owner, name=name.strip(), notes=notes, tags=list(tags or []))


def default_hyperparameters() -> dict:
    """DEFAULT_HYPERPARAMETERS with the finetune configuration file's `lora:` and `training:` values.
    training.max_epochs caps the default epochs (3, as the seed's configure_training shows); a config
    that turns early stopping on trains up to max_epochs by default (see training_config_create)."""
    config = finetune_config.effective().values
    lora, training = config["lora"], config["training"]
    return {
        **DEFAULT_HYPERPARAMETERS,
        "learning_rate": training["learning_rate"],
        "batch_size": training["batch_size"],
        "gradient_accumulation": training["gradient_accumulation"],
        "epochs": min(DEFAULT_HYPERPARAMETERS["epochs"], training["max_epochs"]),
        "lora_r": lora["r"],
        "lora_alpha": lora["alpha"],
        "lora_dropout": lora["dropout"],
        "target_modules": list(lora["target_modules"]),
    }


def default_approach() -> str:
    return finetune_config.effective().values["default_approach"]


def _spec_checked(check):
    """Run a check of experiments/training/spec.py; its SpecError becomes a 400 naming the field."""
    try:
        return check()
    except training_spec.SpecError as exc:
        raise InvalidInput(str(exc), details={"param": exc.field}) from exc


def hyperparameters_resolve(
    template: str | None, overrides: dict | None, *, approach: str | None = None, task_type: str = "chat"
) -> dict:
    """Defaults, then the template, then the overrides, checked by the training spec (the engine runs
    the same checks). Returns the dict a config stores: the seed's keys and the optional ones given."""
    if template and template not in TEMPLATES:
        raise InvalidInput(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidInput("hyperparameters: must be an object", details={"param": "hyperparameters"})
    merged = {**default_hyperparameters(), **TEMPLATES.get(template or "", {}), **(overrides or {})}
    _spec_checked(
        lambda: training_spec.Hyperparameters.from_dict(
            merged, approach=approach or default_approach(), task_type=task_type
        )
    )
    return merged


def _model_linear_names(model_base: str, task_type: str) -> list[str] | None:
    """The Linear layer names of a local or known-shape model; None when its shape is unknown."""
    from experiments.estimate import _shape

    key = str(Path(model_base).resolve()) if (Path(model_base) / "config.json").is_file() else model_base
    try:
        shape = _shape(key, "classification" if task_type == "classification" else "chat")
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"model_base {model_base!r}: cannot read its config ({exc})") from exc
    return sorted(shape.linear_in_out) if shape else None


def _check_model_limits(model_base: str, hyperparameters: dict) -> None:
    """Limits that depend on the model (max_seq_length vs its positions), from a local model's
    config.json; a hub id we cannot read here is checked by the worker when it loads the model."""
    model_config = _spec_checked(lambda: training_spec.model_config_read(model_base))
    _spec_checked(
        lambda: training_spec.check_model_limits(
            max_seq_length=hyperparameters["max_seq_length"],
            model_config=model_config,
            model_name=Path(model_base).name,
        )
    )


def _check_approach(
    *, approach: str, model_base: str, task_type: str, hyperparameters: dict, targets_given: bool
) -> dict:
    """Approach vs model and hardware; returns the hyperparameters with LoRA targets resolved."""
    if approach not in Approach.values:
        raise InvalidInput(f"unknown approach {approach!r}; choose one of {', '.join(Approach.values)}")
    if approach not in LOCAL_APPROACHES:
        raise InvalidInput(
            f"approach {approach!r} is not available on local workers; use lora, qlora, full or prompt_tuning"
        )
    if approach == Approach.QLORA and importlib.util.find_spec("bitsandbytes") is None:
        raise InvalidInput("approach qlora needs the bitsandbytes package (pip install bitsandbytes)")
    _check_model_limits(model_base, hyperparameters)
    if approach not in ADAPTER_APPROACHES:
        return hyperparameters
    names = _model_linear_names(model_base, task_type)
    if names is None:  # a hub id we cannot inspect here: the worker checks when it loads the model
        return hyperparameters
    if not targets_given:
        for candidate in (default_hyperparameters()["target_modules"], *TARGET_MODULE_DEFAULTS):
            if all(m in names for m in candidate):
                return {**hyperparameters, "target_modules": list(candidate)}
    missing = [m for m in hyperparameters["target_modules"] if m not in names]
    if missing:
        raise InvalidInput(
            f"hyperparameter target_modules: {', '.join(missing)} not in {model_base}; "
            f"choose from {', '.join(names)}"
        )
    return hyperparameters


def _early_stopping(value: dict | None, *, task_type: str, has_validation: bool) -> dict | None:
    if not value:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("early_stopping: must be an object", details={"param": "early_stopping"})
    patience = finetune_config.effective().values["training"]["early_stopping_patience"]
    settings_ = _spec_checked(
        lambda: training_spec.EarlyStopping.from_dict({"patience": patience, **value}, task_type=task_type)
    )
    _spec_checked(
        lambda: training_spec.check_validation_needs(
            training_spec.Checkpointing(), settings_, has_validation=has_validation
        )
    )
    return settings_.to_dict()


def _checkpointing(value: dict | None, *, has_validation: bool) -> dict:
    if value is not None and not isinstance(value, dict):
        raise InvalidInput("checkpointing: must be an object", details={"param": "checkpointing"})
    merged = {**finetune_config.effective().values["checkpointing"], **(value or {})}
    settings_ = _spec_checked(lambda: training_spec.Checkpointing.from_dict(merged))
    _spec_checked(
        lambda: training_spec.check_validation_needs(settings_, None, has_validation=has_validation)
    )
    return settings_.to_dict()


def _dataset_version(*, owner, dataset_id: str, number: int | None) -> DatasetVersion:
    """The version a config trains on: the given number of a visible dataset, or its latest."""
    if number is None:
        return dataset_version_latest(user=owner, dataset_id=dataset_id)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidInput(
            "dataset_version: must be a version number (1, 2, ...)", details={"param": "dataset_version"}
        )
    latest = dataset_version_latest(user=owner, dataset_id=dataset_id)  # the dataset's own 404 first
    try:
        return dataset_version_get(user=owner, dataset_id=dataset_id, number=number)
    except NotFound as exc:
        raise NotFound(
            f"dataset_version: {dataset_id} has no version {number} (its latest is version {latest.number})",
            details={"param": "dataset_version"},
        ) from exc


def _has_validation(version: DatasetVersion) -> bool:
    return bool((version.splits or {}).get("validation", {}).get("rows"))


def _queue(queue: str | None) -> str:
    if not queue:
        return ""
    if queue not in settings.TRAINING_QUEUES:
        raise InvalidInput(f"unknown queue {queue!r}; choose one of {', '.join(settings.TRAINING_QUEUES)}")
    return queue


def _train_tokens(version: DatasetVersion) -> int:
    stats = version.statistics
    per_row = stats.get("avg_tokens_input", 0) + stats.get("avg_tokens_output", 0)
    return int(per_row * stats.get("train_samples", 0))


def training_config_create(
    *,
    owner,
    dataset_id: str,
    model_base: str,
    approach: str | None = None,
    hyperparams: dict | None = None,
    template: str | None = None,
    experiment: Experiment | None = None,
    early_stopping: dict | None = None,
    checkpointing: dict | None = None,
    queue: str | None = None,
    dataset_version: int | None = None,
) -> TrainingConfig:
    """configure_training: resolve defaults and a template, validate against the model and the
    hardware, estimate resources, store. dataset_version: the version number to train on (None: the
    dataset's latest); the config records the version it used."""
    approach = approach or default_approach()
    version = _dataset_version(owner=owner, dataset_id=dataset_id, number=dataset_version)
    if version.task_type == "preference":
        raise InvalidInput(
            f"{dataset_id} is a preference dataset (prompt/chosen/rejected): preference tuning (DPO) is not "
            "available yet; train on a chat, instruction, completion or classification dataset"
        )
    base_path = resolve_model_base(model_base, user=owner)
    if approach in LOCAL_APPROACHES:
        from experiments.model_refs import base_model_check_loadable

        base_model_check_loadable(name=model_base, resolved=base_path, user=owner)
    hyperparameters = hyperparameters_resolve(
        template, hyperparams, approach=approach, task_type=version.task_type
    )
    hyperparameters = _check_approach(
        approach=approach,
        model_base=base_path,
        task_type=version.task_type,
        hyperparameters=hyperparameters,
        targets_given="target_modules" in (hyperparams or {}),
    )
    has_validation = _has_validation(version)
    early_stopping = _early_stopping(
        early_stopping, task_type=version.task_type, has_validation=has_validation
    )
    epochs_given = "epochs" in (hyperparams or {}) or "epochs" in TEMPLATES.get(template or "", {})
    if early_stopping and not epochs_given:
        # With early stopping on, training runs up to the file's max_epochs unless it stops sooner.
        hyperparameters["epochs"] = finetune_config.effective().values["training"]["max_epochs"]
    checkpoint_settings = _checkpointing(checkpointing, has_validation=has_validation)
    estimate = estimate_for(
        model_base=base_path,
        task_type=version.task_type,
        approach=approach,
        hyperparameters=hyperparameters,
        train_tokens=_train_tokens(version),
        workers=registered_workers(),
    )
    with transaction.atomic():
        if experiment is None:  # runs of one model on one dataset group under one automatic experiment
            name = f"{model_base} on {version.dataset.name}"
            experiment = Experiment.objects.filter(owner=owner, name=name).order_by("-pk").first()
            experiment = experiment or Experiment.objects.create(owner=owner, name=name)
        return TrainingConfig.objects.create(
            owner=owner,
            experiment=experiment,
            dataset_version=version,
            model_base=model_base,
            approach=approach,
            task_type=version.task_type,
            template=template or "",
            hyperparameters=hyperparameters,
            early_stopping=early_stopping,
            checkpointing=checkpoint_settings,
            estimate=estimate,
            queue=_queue(queue),
        )


def resource_estimate(
    *,
    owner,
    model_base: str,
    approach: str | None = None,
    hyperparams: dict | None = None,
    template: str | None = None,
    dataset_id: str | None = None,
    dataset_version: int | None = None,
    task_type: str = "chat",
) -> dict:
    """estimate_resources for a config that is not stored yet (the config form's live estimate), on
    the dataset version the config would train on (dataset_version; None: the latest)."""
    if not model_base.strip():
        raise InvalidInput("pick a base model")
    approach = approach or default_approach()
    train_tokens = 0
    if dataset_id:
        version = _dataset_version(owner=owner, dataset_id=dataset_id, number=dataset_version)
        train_tokens, task_type = _train_tokens(version), version.task_type
    base_path = resolve_model_base(model_base, user=owner)
    hyperparameters = hyperparameters_resolve(template, hyperparams, approach=approach, task_type=task_type)
    hyperparameters = _check_approach(
        approach=approach,
        model_base=base_path,
        task_type=task_type,
        hyperparameters=hyperparameters,
        targets_given="target_modules" in (hyperparams or {}),
    )
    return estimate_for(
        model_base=base_path,
        task_type=task_type,
        approach=approach,
        hyperparameters=hyperparameters,
        train_tokens=train_tokens,
        workers=registered_workers(),
    )


@transaction.atomic
def training_config_set_early_stopping(
    *, config: TrainingConfig, patience: int | None = None, min_delta: float = 0.01, metric: str = "val_loss"
) -> TrainingConfig:
    """configure_early_stopping for a config; jobs started afterwards use it (patience: the finetune
    configuration file's training.early_stopping_patience unless given)."""
    given = {"patience": patience} if patience is not None else {}
    config.early_stopping = _early_stopping(
        {**given, "min_delta": min_delta, "metric": metric},
        task_type=config.task_type,
        has_validation=_has_validation(config.dataset_version),
    )
    config.save(update_fields=["early_stopping"])
    return config


@transaction.atomic
def training_config_set_checkpointing(
    *,
    config: TrainingConfig,
    save_steps: int | None = None,
    save_total_limit: int | None = None,
    best_only: bool = False,
) -> TrainingConfig:
    """configure_checkpoints for a config; jobs started afterwards use it (unset values: the finetune
    configuration file's checkpointing block)."""
    given = {"save_steps": save_steps, "save_total_limit": save_total_limit}
    config.checkpointing = _checkpointing(
        {**{k: v for k, v in given.items() if v is not None}, "best_only": best_only},
        has_validation=_has_validation(config.dataset_version),
    )
    config.save(update_fields=["checkpointing"])
    return config
