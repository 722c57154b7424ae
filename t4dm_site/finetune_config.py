"""The finetune configuration file: the seed's ``finetune:`` YAML, loaded once at start-up.

Where it comes from (first that applies):
1. ``T4DM_FINETUNE_CONFIG=/path/to/file.yaml`` (the file must exist);
2. ``finetune.yaml`` in the project root, if present;
3. the built-in defaults below (the seed's values).

A file may set any subset of keys; the rest keep their built-in values. Unknown keys, wrong types and
out-of-range values stop start-up with an ``ImproperlyConfigured`` naming the file, the line and the key,
e.g. ``finetune.yaml, line 7: finetune.lora.r: expected a whole number >= 1, got 0``.

This module is imported by settings.py: it must not import Django models or anything heavy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ImproperlyConfigured

ENV_VAR = "T4DM_FINETUNE_CONFIG"
DEFAULT_FILENAME = "finetune.yaml"
BUILT_IN = "built-in"

# The seed's "Configuration" block.
BUILT_IN_DEFAULTS: dict[str, Any] = {
    "default_approach": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
    "training": {
        "learning_rate": 2e-5,
        "batch_size": 4,
        "gradient_accumulation": 4,
        "max_epochs": 5,
        "early_stopping_patience": 3,
    },
    "checkpointing": {"save_steps": 500, "save_total_limit": 3},
    "evaluation": {"metrics": ["accuracy", "perplexity", "f1"], "test_samples": 100},
    "versioning": {"auto_version": True, "compare_to_base": True},
}

# Kept here (not imported) so settings stay light; a test checks they match the real registries.
APPROACHES = ("lora", "qlora", "full", "prompt_tuning")
METRICS = ("accuracy", "bertscore", "bleu", "exact_match", "f1", "perplexity", "precision", "recall", "rouge")


class FinetuneConfigError(ImproperlyConfigured):
    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, key: str | None = None
    ):
        where = ", ".join(part for part in (path, f"line {line}" if line else None) if part)
        super().__init__(f"finetune config {where}: {message}" if where else f"finetune config: {message}")
        self.path, self.line, self.key = path, line, key


# --- value checks: each returns the cleaned value or raises ValueError("expected ...") -------------
def _whole(minimum: int, maximum: int | None = None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ValueError(f"expected a whole number {bound}, got {value!r}")
        return value

    return check


def _number(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
):
    def check(value):
        # YAML 1.1 reads `2e-5` (no dot) as a string; the seed writes it that way, so accept it.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        wrong = (
            (above is not None and value <= above)
            or (at_least is not None and value < at_least)
            or (below is not None and value >= below)
            or (at_most is not None and value > at_most)
        )
        if wrong:
            bounds = [
                f"> {above}" if above is not None else None,
                f">= {at_least}" if at_least is not None else None,
                f"< {below}" if below is not None else None,
                f"<= {at_most}" if at_most is not None else None,
            ]
            raise ValueError(f"expected a number {' and '.join(b for b in bounds if b)}, got {value!r}")
        return value

    return check


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _choice(choices: tuple[str, ...]):
    def check(value):
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _names(allowed: tuple[str, ...] | None = None):
    def check(value):
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise ValueError(f"expected a non-empty list of names, got {value!r}")
        if allowed:
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise ValueError(
                    f"unknown name(s) {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}"
                )
        return list(value)

    return check


SCHEMA: dict[str, Any] = {
    "default_approach": _choice(APPROACHES),
    "lora": {
        "r": _whole(1, 4096),
        "alpha": _number(above=0),
        "dropout": _number(at_least=0, below=1),
        "target_modules": _names(),
    },
    "training": {
        "learning_rate": _number(above=0, at_most=1),
        "batch_size": _whole(1, 65536),
        "gradient_accumulation": _whole(1, 65536),
        "max_epochs": _whole(1, 10000),
        "early_stopping_patience": _whole(1, 10000),
    },
    "checkpointing": {"save_steps": _whole(1), "save_total_limit": _whole(1)},
    "evaluation": {"metrics": _names(METRICS), "test_samples": _whole(1)},
    "versioning": {"auto_version": _boolean, "compare_to_base": _boolean},
}


@dataclass
class FinetuneConfig:
    """The effective values, where the file was (None: built-in) and, per dotted key, where each value
    came from: the file path, "built-in", or "env VAR" for an environment override."""

    values: dict[str, Any]
    path: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.path or BUILT_IN

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    def override(self, dotted: str, value: Any, source: str) -> None:
        *parents, last = dotted.split(".")
        node = self.values
        for part in parents:
            node = node[part]
        node[last] = value
        self.sources[dotted] = source

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": self.path,
            "finetune": copy.deepcopy(self.values),
            "sources": dict(self.sources),
        }


def _leaf_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, spec in schema.items():
        dotted = f"{prefix}{name}"
        keys.extend(_leaf_keys(spec, dotted + ".") if isinstance(spec, dict) else [dotted])
    return keys


def built_in() -> FinetuneConfig:
    return FinetuneConfig(
        values=copy.deepcopy(BUILT_IN_DEFAULTS), sources={key: BUILT_IN for key in _leaf_keys(SCHEMA)}
    )


def _key_lines(node: yaml.Node, prefix: str, lines: dict[str, int], path: str) -> None:
    """Line numbers (1-based) of every key and value in the composed YAML; duplicate keys are errors."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{prefix}{key}"
            if key in seen:
                raise FinetuneConfigError(
                    f"{dotted}: duplicate key", path=path, line=key_node.start_mark.line + 1, key=dotted
                )
            seen.add(key)
            lines[dotted] = key_node.start_mark.line + 1
            _key_lines(value_node, dotted + ".", lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[f"{prefix}{index}"] = item.start_mark.line + 1


def _line_for(lines: dict[str, int], dotted: str) -> int | None:
    while dotted:
        if dotted in lines:
            return lines[dotted]
        dotted = dotted.rpartition(".")[0]
    return None


def parse(text: str, *, path: str = "<string>") -> FinetuneConfig:
    """Validate a finetune YAML document and merge it over the built-in defaults."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise FinetuneConfigError(
            f"not valid YAML: {problem}", path=path, line=mark.line + 1 if mark else None
        ) from None
    lines: dict[str, int] = {}
    if root is not None:
        _key_lines(root, "", lines, path)

    def fail(dotted: str, message: str):
        raise FinetuneConfigError(
            f"{dotted}: {message}", path=path, line=_line_for(lines, dotted), key=dotted
        )

    if not isinstance(data, dict) or "finetune" not in data:
        raise FinetuneConfigError(
            "expected a mapping with one top-level key 'finetune:'",
            path=path,
            line=root.start_mark.line + 1 if root else None,
        )
    for key in data:
        if key != "finetune":
            fail(str(key), "unknown key; the file holds one top-level key, 'finetune'")
    config = built_in()
    body = data["finetune"]
    if body is None:
        return FinetuneConfig(values=config.values, path=path, sources=config.sources)
    _merge(body, SCHEMA, "finetune", config, path, fail)
    _check_with_training_spec(config.values, fail)
    config.path = path
    return config


# The file's keys → the training spec's fields (experiments/training/spec.py: the checks every config
# and every job goes through).
SPEC_FIELDS = {
    "hyperparameters.lora_r": "lora.r",
    "hyperparameters.lora_alpha": "lora.alpha",
    "hyperparameters.lora_dropout": "lora.dropout",
    "hyperparameters.target_modules": "lora.target_modules",
    "hyperparameters.learning_rate": "training.learning_rate",
    "hyperparameters.batch_size": "training.batch_size",
    "hyperparameters.gradient_accumulation": "training.gradient_accumulation",
    "hyperparameters.epochs": "training.max_epochs",
    "early_stopping.patience": "training.early_stopping_patience",
    "checkpointing.save_steps": "checkpointing.save_steps",
    "checkpointing.save_total_limit": "checkpointing.save_total_limit",
}


def _check_with_training_spec(values: dict[str, Any], fail) -> None:
    """The defaults this file gives every config pass the same training spec a config sent to
    POST /configs does (a torch-free, Django-free module: cheap to import here)."""
    from experiments.training import spec

    lora, training = values["lora"], values["training"]
    try:
        spec.Hyperparameters.from_dict(
            {
                "lora_r": lora["r"],
                "lora_alpha": lora["alpha"],
                "lora_dropout": lora["dropout"],
                "target_modules": list(lora["target_modules"]),
                "learning_rate": training["learning_rate"],
                "batch_size": training["batch_size"],
                "gradient_accumulation": training["gradient_accumulation"],
                "epochs": training["max_epochs"],
            },
            approach=values["default_approach"],
        )
        spec.EarlyStopping.from_dict({"patience": training["early_stopping_patience"]})
        spec.Checkpointing.from_dict(dict(values["checkpointing"]))
    except spec.SpecError as exc:
        fail(f"finetune.{SPEC_FIELDS.get(exc.field, exc.field)}", exc.reason)


def _merge(section: Any, schema: dict, dotted: str, config: FinetuneConfig, path: str, fail) -> None:
    if not isinstance(section, dict):
        fail(dotted, f"expected a mapping of {', '.join(schema)}, got {section!r}")
    for key, value in section.items():
        name = f"{dotted}.{key}"
        spec = schema.get(key) if isinstance(key, str) else None
        if spec is None:
            fail(name, f"unknown key; expected one of {', '.join(schema)}")
        if isinstance(spec, dict):
            _merge(value, spec, name, config, path, fail)
            continue
        try:
            cleaned = spec(value)
        except ValueError as exc:
            fail(name, str(exc))
        config.override(name.removeprefix("finetune."), cleaned, path)


def load(path: str | Path) -> FinetuneConfig:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise FinetuneConfigError(f"cannot read the file ({exc.strerror or exc})", path=str(file)) from None
    return parse(text, path=str(file.resolve()))


def load_for_settings(*, env_path: str | None, base_dir: Path) -> FinetuneConfig:
    """What settings.py calls: the env var's file, else ./finetune.yaml if present, else built-in."""
    if env_path:
        return load(env_path)
    default = base_dir / DEFAULT_FILENAME
    if default.is_file():
        return load(default)
    return built_in()


def effective() -> FinetuneConfig:
    """The running configuration (settings.FINETUNE_CONFIG; tests may swap it with the settings fixture)."""
    from django.conf import settings

    return settings.FINETUNE_CONFIG
