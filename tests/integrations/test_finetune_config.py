"""The finetune configuration file: validation with the key and line, defaults everywhere, the env
override of versioning, and the effective configuration in the dashboard and the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from t4dm_site import finetune_config
from t4dm_site.finetune_config import BUILT_IN_DEFAULTS, FinetuneConfigError, load

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
finetune:
  default_approach: full
  lora:
    r: 4
    alpha: 8
    target_modules: ["q_proj", "k_proj", "v_proj"]
  training:
    learning_rate: 5e-4
    batch_size: 2
    early_stopping_patience: 7
    max_epochs: 9
  checkpointing:
    save_steps: 25
  evaluation:
    test_samples: 7
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "finetune.yaml"
    path.write_text(text)
    return path


def test_the_example_file_and_the_built_in_defaults_are_the_seeds():
    assert load(ROOT / "finetune.example.yaml").values == BUILT_IN_DEFAULTS
    assert BUILT_IN_DEFAULTS["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"],
    }
    assert BUILT_IN_DEFAULTS["training"]["learning_rate"] == 2e-5


def test_the_lists_it_checks_against_match_the_real_registries():
    from experiments.services import LOCAL_APPROACHES
    from experiments.training.evaluation.metrics import ALL_METRIC_NAMES

    assert set(finetune_config.APPROACHES) == {str(a) for a in LOCAL_APPROACHES}
    assert sorted(finetune_config.METRICS) == ALL_METRIC_NAMES


@pytest.mark.parametrize(
    ("text", "line", "key", "needle"),
    [
        ("finetune:\n  lora:\n    r: 16\n    rank: 8\n", 4, "finetune.lora.rank", "unknown key"),
        ("finetune:\n  trainig:\n    batch_size: 4\n", 2, "finetune.trainig", "unknown key"),
        (
            "finetune:\n  training:\n    batch_size: four\n",
            3,
            "finetune.training.batch_size",
            "expected a whole number",
        ),
        (
            "finetune:\n  versioning:\n    auto_version: maybe\n",
            3,
            "finetune.versioning.auto_version",
            "true or false",
        ),
        (
            "finetune:\n  lora:\n    target_modules: q_proj\n",
            3,
            "finetune.lora.target_modules",
            "list of names",
        ),
        ("finetune:\n\n  lora:\n    dropout: 1.5\n", 4, "finetune.lora.dropout", "< 1"),
        ("finetune:\n  checkpointing:\n    save_steps: 0\n", 3, "finetune.checkpointing.save_steps", ">= 1"),
        ("finetune:\n  training:\n    learning_rate: -1\n", 3, "finetune.training.learning_rate", "> 0"),
        ("finetune:\n  default_approach: magic\n", 2, "finetune.default_approach", "one of lora"),
        (
            "finetune:\n  evaluation:\n    metrics: [accuracy, vibes]\n",
            3,
            "finetune.evaluation.metrics",
            "'vibes'",
        ),
        ("finetune:\n  lora:\n    r: 4\n    r: 8\n", 4, "finetune.lora.r", "duplicate key"),
        ("finetune:\n  lora: [1, 2\n", 3, None, "not valid YAML"),
        ("fine_tune:\n  lora: {}\n", 1, None, "top-level key 'finetune:'"),
    ],
)
def test_a_bad_file_names_the_key_and_the_line(tmp_path, text, line, key, needle):
    path = _write(tmp_path, text)
    with pytest.raises(FinetuneConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert f"line {line}:" in message and needle in message and str(path) in message
    if key:
        assert f"{key}:" in message and caught.value.key == key and caught.value.line == line


def test_a_bad_file_stops_start_up_with_that_message(tmp_path):
    path = _write(tmp_path, "finetune:\n  training:\n    batch_size: 4\n    max_epochs: 0\n")
    env = {**os.environ, "T4DM_FINETUNE_CONFIG": str(path), "T4DM_DATA_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert (
        f"finetune config {path}, line 4: finetune.training.max_epochs: expected a whole number"
        in done.stderr
    )


def test_the_env_var_file_is_loaded_and_the_env_still_overrides_versioning(tmp_path):
    path = _write(tmp_path, "finetune:\n  versioning:\n    auto_version: false\n    compare_to_base: true\n")
    env = {
        **os.environ,
        "T4DM_FINETUNE_CONFIG": str(path),
        "T4DM_DATA_DIR": str(tmp_path / "var"),
        "T4DM_COMPARE_TO_BASE": "0",
    }
    env.pop("T4DM_AUTO_VERSION", None)
    code = (
        "from django.conf import settings as s; "
        "print(s.T4DM_VERSIONING, s.FINETUNE_CONFIG.sources['versioning.compare_to_base'], s.FINETUNE_CONFIG.path)"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"{{'auto_version': False, 'compare_to_base': False}} env T4DM_COMPARE_TO_BASE {path}" in done.stdout
    )


def test_a_valid_file_changes_the_api_defaults(api, client, researcher, demo_config, settings, tmp_path):
    # given: the running configuration comes from a file
    path = _write(tmp_path, VALID)
    settings.FINETUNE_CONFIG = load(path)
    dataset_id = demo_config.dataset_version.dataset.public_id

    # when: a config is created with no hyperparameters, approach or checkpointing
    response = api.post(researcher, "/configs", {"model_base": "t4dm-tiny", "dataset_id": dataset_id})

    # then: the file's values are its defaults
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["approach"] == "full"
    hp = body["hyperparameters"]
    assert (hp["learning_rate"], hp["batch_size"], hp["lora_r"], hp["lora_alpha"]) == (5e-4, 2, 4, 8)
    assert hp["gradient_accumulation"] == 4 and hp["epochs"] == 3  # untouched keys keep the built-in values
    assert body["checkpointing"]["save_steps"] == 25 and body["checkpointing"]["save_total_limit"] == 3

    # early stopping on: the file's patience, and training runs up to max_epochs
    response = api.post(
        researcher,
        "/configs",
        {
            "model_base": "t4dm-tiny",
            "dataset_id": dataset_id,
            "approach": "lora",
            "early_stopping": {"min_delta": 0.0},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["early_stopping"]["patience"] == 7 and body["hyperparameters"]["epochs"] == 9
    # the file's target modules are tried first and the tiny model has all three
    assert body["hyperparameters"]["target_modules"] == ["q_proj", "k_proj", "v_proj"]

    assert api.get(researcher, "/templates").json()["defaults"]["lora_r"] == 4
    effective = api.get(researcher, "/finetune-config").json()
    assert effective["path"] == str(path) and effective["source"] == str(path)
    assert effective["finetune"]["training"]["learning_rate"] == 5e-4
    assert effective["sources"]["lora.r"] == str(path) and effective["sources"]["lora.dropout"] == "built-in"

    page = client.get("/settings/finetune/", headers={})
    assert page.status_code == 302  # not logged in
    client.force_login(researcher)
    page = client.get("/settings/finetune/").content.decode()
    assert str(path) in page and "finetune.training.learning_rate" in page and "0.0005" in page


def test_evaluations_default_to_the_files_metrics_and_test_samples(
    researcher, demo_config, settings, tmp_path, tiny_model_dir
):
    from experiments.evaluation.services import evaluation_start

    settings.FINETUNE_CONFIG = load(
        _write(tmp_path, "finetune:\n  evaluation:\n    metrics: [exact_match]\n    test_samples: 3\n")
    )
    evaluation = evaluation_start(
        owner=researcher,
        model_path=str(tiny_model_dir),
        test_dataset=demo_config.dataset_version.dataset.public_id,
    )
    assert evaluation.requested_metrics[0] == "exact_match"  # then the chat standard set
    assert {"perplexity", "bleu", "rouge"} <= set(evaluation.requested_metrics)
    assert evaluation.params["max_samples"] == 3


def test_only_admins_see_where_webhooks_point(client, researcher, make_user, settings):
    from experiments.integrations.models import WebhookSubscription

    WebhookSubscription.objects.create(
        url="https://hooks.internal.example/t4dm", event_types=["job.succeeded"]
    )
    settings.VALIDATOR_URL = "https://validator.internal.example/check"
    client.force_login(researcher)
    page = client.get("/settings/finetune/").content.decode()
    assert "hooks.internal.example" not in page and "validator.internal.example" not in page
    assert "1 active" in page and "an HTTP endpoint" in page
    client.force_login(make_user("ada", role="admin"))
    page = client.get("/settings/finetune/").content.decode()
    assert "https://hooks.internal.example/t4dm" in page and "validator.internal.example/check" in page
