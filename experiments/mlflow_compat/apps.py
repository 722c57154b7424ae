from django.apps import AppConfig


class MLflowCompatConfig(AppConfig):
    name = "experiments.mlflow_compat"
    label = "mlflow_compat"
    verbose_name = "MLflow-compatible tracking"
    default_auto_field = "django.db.models.BigAutoField"
