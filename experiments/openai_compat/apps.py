from django.apps import AppConfig


class OpenAICompatConfig(AppConfig):
    name = "experiments.openai_compat"
    label = "openai_compat"
    verbose_name = "OpenAI-compatible API"
    default_auto_field = "django.db.models.BigAutoField"
