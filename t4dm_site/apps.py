from django.apps import AppConfig


class T4dmSiteConfig(AppConfig):
    name = "t4dm_site"
    verbose_name = "Accounts and API tokens"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The lifecycle events' subscriber table (t4dm_site.events.SUBSCRIBERS), resolved once every
        # app is loaded: a wrong path fails at startup.
        from t4dm_site import events

        events.wire()
