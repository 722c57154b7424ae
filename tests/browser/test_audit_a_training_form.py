"""The training form (issue 19, "Training form"): it offers only base models a worker here can load;
its advanced options (target modules, max steps, gradient checkpointing, checkpoint interval and
limit, early stopping) reach the stored config; a configuration no known GPU holds is said in words;
the estimate names the device it assumes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.platform import browser_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditA-shots")


def test_the_form_offers_only_loadable_bases(page, live_server, transactional_db, demo_config):
    browser_log_in(page, live_server.url)
    page.goto(live_server.url + "/configs/new/")
    offered = page.eval_on_selector_all("#model-bases option", "os => os.map(o => o.value)")
    assert offered[0] == "t4dm-tiny"
    # the estimator's table of well-known shapes is not a list of models a worker here has
    assert not [m for m in offered if re.search(r"qwen|llama|mistral", m)], offered


def test_advanced_options_reach_the_config_and_impossible_sizes_are_named(
    page, live_server, transactional_db, demo_config
):
    from experiments.models import TrainingJob

    SHOTS.mkdir(exist_ok=True)
    browser_log_in(page, live_server.url)
    page.goto(live_server.url + "/configs/new/")
    page.wait_for_function("document.getElementById('est-training_device').textContent !== '—'")
    assert page.locator("#est-training_device").inner_text().strip() not in ("", "—", "unknown")
    basis = page.locator("#est-basis").inner_text()
    assert "202k params" in basis and "0.000202B" not in basis, basis

    # batch 1,000,000 at length 512: more activation memory than any known GPU holds
    page.fill("input[name=batch_size]", "1000000")
    page.wait_for_function("!document.getElementById('est-warning').hidden")
    assert "No known GPU can hold this configuration" in page.locator("#est-warning").inner_text()
    assert page.locator("#est-recommended_gpu").inner_text() == "none"
    page.screenshot(path=str(SHOTS / "config_form_impossible.png"), full_page=True)
    page.fill("input[name=batch_size]", "2")
    page.wait_for_function("document.getElementById('est-warning').hidden")

    page.click("#advanced-options summary")
    page.fill("input[name=target_modules]", "q_proj, v_proj")
    page.fill("input[name=max_steps]", "7")
    page.check("input[name=gradient_checkpointing]")
    page.fill("input[name=weight_decay]", "0.01")
    page.select_option("select[name=lr_scheduler]", "cosine")
    page.fill("input[name=eval_steps]", "5")
    page.fill("input[name=save_steps]", "5")
    page.fill("input[name=save_total_limit]", "2")
    page.check("input[name=early_stopping]")
    page.fill("input[name=early_stopping_patience]", "2")
    page.screenshot(path=str(SHOTS / "config_form_advanced.png"), full_page=True)
    page.click("#start-training")
    page.wait_for_url("**/jobs/job-*/")
    config = TrainingJob.objects.order_by("pk").last().config
    hp = config.hyperparameters
    assert (hp["target_modules"], hp["max_steps"], hp["gradient_checkpointing"]) == (
        ["q_proj", "v_proj"],
        7,
        True,
    )
    assert (hp["weight_decay"], hp["lr_scheduler"], hp["eval_steps"]) == (0.01, "cosine", 5)
    assert (config.checkpointing["save_steps"], config.checkpointing["save_total_limit"]) == (5, 2)
    assert (config.early_stopping["metric"], config.early_stopping["patience"]) == ("val_loss", 2)


def test_a_new_experiment_named_like_an_existing_one_joins_it(
    page, live_server, transactional_db, demo_config
):
    """Typing the name of an experiment you already have made a second one of the same name."""
    from experiments.models import Experiment, TrainingJob

    browser_log_in(page, live_server.url)
    page.goto(live_server.url + "/configs/new/")
    page.wait_for_function("document.getElementById('est-training_device').textContent !== '—'")
    page.fill("input[name=experiment_name]", demo_config.experiment.name.upper())
    page.click("#start-training")
    page.wait_for_url("**/jobs/job-*/")
    assert TrainingJob.objects.order_by("pk").last().config.experiment_id == demo_config.experiment_id
    assert Experiment.objects.filter(name__iexact=demo_config.experiment.name).count() == 1
