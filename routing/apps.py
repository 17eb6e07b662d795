from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from vault.services import sealed_field_add  # models need the app registry

        from . import signals  # noqa: F401  (routing table invalidation)

        sealed_field_add(model_label="routing.Channel", field="credential")
