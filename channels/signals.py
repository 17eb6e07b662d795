from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Channel, ChannelModel, Model
from .table import table_invalidate


@receiver([post_save, post_delete], sender=Channel)
@receiver([post_save, post_delete], sender=ChannelModel)
@receiver([post_save, post_delete], sender=Model)
def _routing_changed(**_kwargs) -> None:
    table_invalidate()
