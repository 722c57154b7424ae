from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "Experiments and training"
    default_auto_field = "django.db.models.BigAutoField"
