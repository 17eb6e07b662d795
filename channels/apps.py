from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from vault.services import sealed_field_add  # models need the app registry

        from . import signals  # noqa: F401  (routing table invalidation)

        sealed_field_add(model_label="channels.Channel", field="credential")
