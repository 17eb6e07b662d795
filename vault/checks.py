"""`manage.py check --deploy` says when the vault's key derives from SECRET_KEY."""

from django.core.checks import Tags, Warning, register

from .services import is_key_derived_from_secret_key


@register(Tags.security, deploy=True)
def vault_password_check(app_configs, **kwargs):
    if not is_key_derived_from_secret_key():
        return []
    return [
        Warning(
            "TOKENHUB_VAULT_PASSWORD is not set: upstream credentials are sealed with a key derived from SECRET_KEY.",
            hint="Set TOKENHUB_VAULT_PASSWORD, run vault_rotate, and back up the password (docs/security.md).",
            id="vault.W001",
        )
    ]
