from django.apps import AppConfig


class T4dmSiteConfig(AppConfig):
    name = "t4dm_site"
    verbose_name = "Accounts and API tokens"
    default_auto_field = "django.db.models.BigAutoField"
