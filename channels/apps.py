from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (routing table invalidation)
