from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin

from t4dm_site.models import ApiToken, hash_token

PROJECT_APPS = {
    "t4dm_site",
    "datasets_app",
    "experiments",
    "models_registry",
    "workflows",
    "integrations",
    "human_eval",
    "openai_compat",
    "mlflow_compat",
}


def test_every_project_model_is_in_the_admin():
    models = [m for m in apps.get_models() if m._meta.app_label in PROJECT_APPS]
    missing = [m.__name__ for m in models if m not in admin.site._registry]
    assert not missing, f"not registered in the admin: {missing}"


@pytest.mark.parametrize(
    "model", [m for m in apps.get_models() if m._meta.app_label in PROJECT_APPS], ids=lambda m: m.__name__
)
def test_each_changelist_loads_with_search_and_filters(admin_client, demo_config, model):
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "x"}).status_code == 200


def test_a_token_created_in_the_admin_is_shown_once_and_stored_hashed(admin_client, admin_user):
    response = admin_client.post(
        "/admin/t4dm_site/apitoken/add/", {"user": admin_user.pk, "name": "laptop"}, follow=True
    )
    assert response.status_code == 200
    text = response.content.decode()
    raw = text.split("copy it): ")[1].split("<")[0].strip()
    token = ApiToken.objects.get(name="laptop")
    assert token.token_hash == hash_token(raw) and raw not in token.prefix
    assert raw not in admin_client.get(f"/admin/t4dm_site/apitoken/{token.pk}/change/").content.decode()
