"""One list of base models for the forms: the config form and the workflow form offer the same base
models, the built-in tiny model first, then the user's versions and finished runs: only models a worker
here loads (issue 19). The estimator's catalogue of well-known shapes is for estimates, not forms."""

from __future__ import annotations

import pytest

from experiments.model_refs import base_model_catalogue
from experiments.training.resources import KNOWN_CONFIGS

pytestmark = pytest.mark.django_db


def test_the_forms_offer_the_same_loadable_models(client, researcher):
    # given
    client.force_login(researcher)

    # when
    config_form = client.get("/configs/new/")
    workflow_form = client.get("/workflows/")

    # then
    offered = [c["ref"] for c in config_form.context["form"]["model_bases"]]
    assert offered[0] == "t4dm-tiny"
    assert workflow_form.context["model_bases"] == offered
    assert not set(offered) & set(KNOWN_CONFIGS)  # hub-only names are refused for training here
    assert "llama-3-70b" not in workflow_form.content.decode()


def test_the_estimators_catalogue_keeps_the_known_shapes():
    catalogue = base_model_catalogue()
    assert catalogue[0] == "t4dm-tiny" and set(catalogue[1:]) == set(KNOWN_CONFIGS)
