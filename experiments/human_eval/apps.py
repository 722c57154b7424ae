from django.apps import AppConfig


class HumanEvalConfig(AppConfig):
    name = "experiments.human_eval"
    label = "human_eval"
    verbose_name = "Human evaluation"
    default_auto_field = "django.db.models.BigAutoField"
