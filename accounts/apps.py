from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (the deploy check; configuration changes reach every process)

        _allauth_admin_declares_permissions()


def _allauth_admin_declares_permissions() -> None:
    """allauth's e-mail address admin offers "make verified" to anybody who may see the page;
    registered again so that the action needs the change permission (docs/security.md). Runs
    after the admin's autodiscovery, which has registered allauth's own."""
    from allauth.account.admin import EmailAddressAdmin
    from allauth.account.models import EmailAddress
    from django.contrib import admin

    class PortalEmailAddressAdmin(EmailAddressAdmin):
        @admin.action(description="Mark as verified", permissions=["change"])
        def make_verified(self, request, queryset):
            return super().make_verified(request, queryset)

    if admin.site.is_registered(EmailAddress):
        admin.site.unregister(EmailAddress)
    admin.site.register(EmailAddress, PortalEmailAddressAdmin)
