from django.urls import path

from models_registry import views

urlpatterns = [
    path("", views.model_list, name="registry-models"),
    path("<str:model_id>/", views.model_detail, name="registry-model"),
    path("<str:model_id>/compare/", views.versions_compare, name="registry-compare"),
    path("<str:model_id>/<str:version>/", views.version_detail, name="registry-version"),
    path("<str:model_id>/<str:version>/playground/", views.playground, name="registry-playground"),
    path("<str:model_id>/<str:version>/stage/", views.version_stage, name="registry-version-stage"),
    path("<str:model_id>/<str:version>/evaluate/", views.version_evaluate, name="registry-version-evaluate"),
    path("<str:model_id>/<str:version>/signoff/", views.version_signoff, name="registry-version-signoff"),
    path("<str:model_id>/<str:version>/export/", views.version_export, name="registry-version-export"),
    path(
        "<str:model_id>/<str:version>/exports/<int:export_id>/download/",
        views.export_download,
        name="registry-export-download",
    ),
]
