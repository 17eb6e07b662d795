"""Keys and tenants are configuration: a change is in force for the next request of every
process (`common.config_version`), whoever made it (service, command, admin change form)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from common.config_version import config_changed

from .models import ApiKey, Tenant


@receiver([post_save, post_delete], sender=ApiKey)
@receiver([post_save, post_delete], sender=Tenant)
def _access_changed(**_kwargs) -> None:
    config_changed()
