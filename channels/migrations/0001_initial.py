"""The channel catalog moves here from the routing app: the tables stay as they are (their
names are kept in each model's Meta), only Django's record of which app owns them changes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('routing', '0002_health_balance_thompson'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
            migrations.CreateModel(
                name='Model',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('public_id', models.CharField(max_length=200, unique=True)),
                    ('aliases', models.JSONField(blank=True, default=list)),
                    ('context_window', models.PositiveIntegerField(blank=True, null=True)),
                    ('max_output', models.PositiveIntegerField(blank=True, null=True)),
                    ('is_hidden', models.BooleanField(default=False)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                ],
                options={
                    'db_table': 'routing_model',
                },
            ),
            migrations.CreateModel(
                name='Channel',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=100, unique=True)),
                    ('provider_type', models.CharField(choices=[('openai', 'Openai'), ('anthropic', 'Anthropic'), ('gemini', 'Gemini'), ('simulated', 'Simulated')], max_length=16)),
                    ('brand', models.CharField(blank=True, default='', max_length=50)),
                    ('base_url', models.CharField(max_length=500)),
                    ('credential', models.TextField(blank=True, default='')),
                    ('groups', models.JSONField(default=list)),
                    ('billing', models.CharField(choices=[('official', 'Official'), ('routed', 'Routed')], default='official', max_length=8)),
                    ('priority', models.IntegerField(default=0)),
                    ('weight', models.PositiveIntegerField(default=1)),
                    ('cost_ratio', models.DecimalField(decimal_places=4, default=1, max_digits=8)),
                    ('discount_ratio', models.DecimalField(decimal_places=4, default=1, max_digits=8)),
                    ('status', models.CharField(choices=[('enabled', 'Enabled'), ('disabled', 'Disabled')], default='enabled', max_length=16)),
                    ('status_reason', models.CharField(blank=True, default='', max_length=300)),
                    ('status_changed_at', models.DateTimeField(blank=True, null=True)),
                    ('connect_timeout_s', models.FloatField(blank=True, null=True)),
                    ('first_byte_timeout_s', models.FloatField(blank=True, null=True)),
                    ('idle_timeout_s', models.FloatField(blank=True, null=True)),
                    ('options', models.JSONField(blank=True, default=dict)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                ],
                options={
                    'db_table': 'routing_channel',
                    'constraints': [models.CheckConstraint(condition=models.Q(('weight__gte', 1)), name='channel_weight_positive'), models.CheckConstraint(condition=models.Q(('cost_ratio__gte', 0)), name='channel_cost_ratio_nonneg'), models.CheckConstraint(condition=models.Q(('discount_ratio__gte', 0)), name='channel_discount_nonneg')],
                },
            ),
            migrations.CreateModel(
                name='ChannelBalanceSnapshot',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('amount_micros', models.BigIntegerField()),
                    ('currency', models.CharField(max_length=3)),
                    ('source', models.CharField(max_length=32)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='balance_snapshots', to='channels.channel')),
                ],
                options={
                    'db_table': 'routing_channelbalancesnapshot',
                    'indexes': [models.Index(fields=['channel', '-created_at'], name='balance_by_channel')],
                    'constraints': [models.CheckConstraint(condition=models.Q(('currency', ''), _negated=True), name='balance_currency_set')],
                },
            ),
            migrations.CreateModel(
                name='ChannelHealth',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('auto_disabled_kind', models.CharField(blank=True, choices=[('', 'not disabled automatically'), ('auth', 'upstream refused the credential'), ('quota', 'upstream account has no balance left'), ('error_rate', 'error rate over the window'), ('balance', 'balance monitor saw zero')], default='', max_length=16)),
                    ('last_probe_at', models.DateTimeField(blank=True, null=True)),
                    ('last_probe_ok', models.BooleanField(blank=True, null=True)),
                    ('last_probe_latency_ms', models.PositiveIntegerField(blank=True, null=True)),
                    ('last_probe_error', models.CharField(blank=True, default='', max_length=300)),
                    ('probe_failures', models.PositiveIntegerField(default=0)),
                    ('balance_warn_below_micros', models.BigIntegerField(blank=True, null=True)),
                    ('is_balance_low', models.BooleanField(default=False)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('channel', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='health', to='channels.channel')),
                ],
                options={
                    'verbose_name_plural': 'channel health',
                    'db_table': 'routing_channelhealth',
                    'constraints': [models.CheckConstraint(condition=models.Q(('auto_disabled_kind__in', ['', 'auth', 'quota', 'error_rate', 'balance'])), name='channelhealth_kind_known')],
                },
            ),
            migrations.CreateModel(
                name='ChannelModel',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('upstream_name', models.CharField(max_length=200)),
                    ('is_enabled', models.BooleanField(default=True)),
                    ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='channel_models', to='channels.channel')),
                    ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='channel_models', to='channels.model')),
                ],
                options={
                    'db_table': 'routing_channelmodel',
                    'constraints': [models.UniqueConstraint(fields=('channel', 'model'), name='channelmodel_once')],
                },
            ),
            migrations.CreateModel(
                name='ThompsonArm',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('model', models.CharField(max_length=200)),
                    ('alpha', models.FloatField()),
                    ('beta', models.FloatField()),
                    ('attempts', models.PositiveIntegerField(default=0)),
                    ('computed_at', models.DateTimeField()),
                    ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='thompson_arms', to='channels.channel')),
                ],
                options={
                    'db_table': 'routing_thompsonarm',
                    'constraints': [models.UniqueConstraint(fields=('channel', 'model'), name='thompsonarm_once'), models.CheckConstraint(condition=models.Q(('alpha__gt', 0), ('beta__gt', 0)), name='thompsonarm_positive')],
                },
            ),
            ],
        ),
    ]
