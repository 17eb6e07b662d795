from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .logs import structlog_configure  # structlog reads nothing of Django; configured once Django is

        structlog_configure()

        from common.cli import command_recorders

        from .services import audit_record

        if audit_record not in command_recorders:
            command_recorders.append(audit_record)  # every mutating command leaves an audit record
        _audit_every_model_admin()


def _audit_every_model_admin() -> None:
    """Every ModelAdmin registered by then (ours, and those of vault, django-axes, allauth and
    Django's auth, which cannot import this app) is given the audit mixin, so an operator's
    change through any admin page leaves its record. Runs after the admin's autodiscovery."""
    from django.contrib import admin

    from .admin_audit import AuditedAdmin
    from .models import AuditRecord, RequestLog

    for model, model_admin in list(admin.site._registry.items()):
        if model in (AuditRecord, RequestLog) or isinstance(model_admin, AuditedAdmin):
            continue
        base = type(model_admin)
        audited = type(f"Audited{base.__name__}", (AuditedAdmin, base), {"__module__": base.__module__})
        admin.site.unregister(model)
        admin.site.register(model, audited)
