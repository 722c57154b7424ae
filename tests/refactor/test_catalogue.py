"""One model catalogue: the config form and the workflow form offer the same base models, the built-in
tiny model first, then every well-known base whose shape the resource estimator knows."""

from __future__ import annotations

import pytest

from experiments.model_refs import base_model_catalogue
from experiments.training.resources import KNOWN_CONFIGS

pytestmark = pytest.mark.django_db


def test_the_forms_offer_the_one_catalogue(client, researcher):
    # given
    catalogue = base_model_catalogue()
    client.force_login(researcher)

    # when
    config_form = client.get("/configs/new/")
    workflow_form = client.get("/workflows/")

    # then
    assert catalogue[0] == "t4dm-tiny" and set(catalogue[1:]) == set(KNOWN_CONFIGS)
    assert config_form.context["form"]["model_bases"] == catalogue
    assert workflow_form.context["model_bases"] == catalogue
    assert "llama-3-70b" in workflow_form.content.decode()  # a known shape the old copy did not list
