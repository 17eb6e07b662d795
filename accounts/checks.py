"""`manage.py check --deploy` says when the portal's mail would go to the server's output."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

CONSOLE = "django.core.mail.backends.console.EmailBackend"


@register(Tags.security, deploy=True)
def mail_backend_check(app_configs, **kwargs):
    if settings.EMAIL_BACKEND != CONSOLE:
        return []
    return [
        Warning(
            "EMAIL_BACKEND is the console: sign-up confirmations, password resets and team invitations "
            "(links that are secrets) are written to the server's output, and no customer receives them.",
            hint="Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and EMAIL_HOST (docs/portal.md).",
            id="accounts.W001",
        )
    ]
