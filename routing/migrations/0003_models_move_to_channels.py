"""The channel catalog now belongs to the channels app (channels 0001): the routing app forgets
its models without touching their tables."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('routing', '0002_health_balance_thompson'),
        ('channels', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
            migrations.RemoveField(
                model_name='channelbalancesnapshot',
                name='channel',
            ),
            migrations.RemoveField(
                model_name='thompsonarm',
                name='channel',
            ),
            migrations.RemoveField(
                model_name='channelmodel',
                name='channel',
            ),
            migrations.RemoveField(
                model_name='channelmodel',
                name='model',
            ),
            migrations.DeleteModel(
                name='ChannelHealth',
            ),
            migrations.DeleteModel(
                name='ChannelBalanceSnapshot',
            ),
            migrations.DeleteModel(
                name='ThompsonArm',
            ),
            migrations.DeleteModel(
                name='Channel',
            ),
            migrations.DeleteModel(
                name='ChannelModel',
            ),
            migrations.DeleteModel(
                name='Model',
            ),
    ],
        ),
    ]
