from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from datasets_app import views as dataset_views
from experiments import views as experiment_views
from experiments.evaluation import views as evaluation_views
from experiments.human_eval import views as human_eval_views
from experiments.integrations import views as integration_views
from experiments.mlflow_compat.api import mlflow_api
from experiments.openai_compat.api import openai_api
from experiments.workflows import views as workflow_views
from models_registry.serving import api as serving_api  # registers /v1/chat/completions etc.
from t4dm_site.api import api
from t4dm_site.health import health_view
from t4dm_site.metrics import metrics_view

urlpatterns = [
    path("", experiment_views.overview, name="overview"),
    path("favicon.ico", experiment_views.favicon, name="favicon"),
    path("jobs/<str:job_id>/", experiment_views.job_detail, name="job-detail"),
    path("demo/start/", experiment_views.demo_start, name="demo-start"),
    path("experiments/", experiment_views.experiments_list, name="experiments-list"),
    path("experiments/compare/", experiment_views.experiments_compare, name="experiments-compare"),
    path("experiments/views/save/", experiment_views.runs_view_save_action, name="runs-view-save"),
    path("experiments/views/delete/", experiment_views.runs_view_delete_action, name="runs-view-delete"),
    path("configs/new/", experiment_views.config_new, name="config-new"),
    path("configs/estimate/", experiment_views.config_estimate, name="config-estimate"),
    path("rate/", human_eval_views.rating_queue, name="rating-queue"),
    path("rate/<str:task_id>/", human_eval_views.rate_task, name="rate-task"),
    path("human-eval/", human_eval_views.task_list, name="human-eval-list"),
    path("human-eval/new/", human_eval_views.task_new, name="human-eval-new"),
    path("human-eval/<str:task_id>/", human_eval_views.task_results, name="human-eval-results"),
    path("evaluations/", evaluation_views.evaluation_list, name="evaluation-list"),
    path("evaluations/new/", evaluation_views.evaluation_new, name="evaluation-new"),
    path("evaluations/<str:evaluation_id>/", evaluation_views.evaluation_detail, name="evaluation-detail"),
    path("workflows/", workflow_views.workflow_list, name="workflow-list"),
    path("workflows/demo/", workflow_views.workflow_demo, name="workflow-demo"),
    path("workflows/<str:workflow_id>/", workflow_views.workflow_detail, name="workflow-detail"),
    path("workflows/<str:workflow_id>/retry/", workflow_views.workflow_retry, name="workflow-retry"),
    path("datasets/", dataset_views.dataset_list, name="dataset-list"),
    path("datasets/<str:dataset_id>/", dataset_views.dataset_detail, name="dataset-detail"),
    path("models/", include("models_registry.urls")),
    path("settings/finetune/", integration_views.finetune_settings, name="finetune-settings"),
    path("settings/webhooks/", integration_views.webhooks, name="webhooks"),
    path(
        "settings/webhooks/<str:subscription_id>/toggle/",
        integration_views.webhook_toggle,
        name="webhook-toggle",
    ),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("v1/serving/events/", serving_api.serving_events, name="serving-events"),
    path("v1/", openai_api.urls),
    path("api/2.0/mlflow/", mlflow_api.urls),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; docs/operations.md
    path("health", health_view, name="health"),
]

admin.site.site_header = "T4DM Fine-Tune administration"
admin.site.site_title = "T4DM admin"
