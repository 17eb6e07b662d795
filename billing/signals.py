"""Prices, groups and exchange rates are configuration: a change is in force for the next
request of every process (`common.config_version`), whoever made it."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from common.config_version import config_changed

from .models import ExchangeRate, Group, Price


@receiver([post_save, post_delete], sender=Price)
@receiver([post_save, post_delete], sender=Group)
@receiver([post_save, post_delete], sender=ExchangeRate)
def _prices_changed(**_kwargs) -> None:
    config_changed()
