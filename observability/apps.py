from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .logs import structlog_configure  # structlog reads nothing of Django; configured once Django is

        structlog_configure()
