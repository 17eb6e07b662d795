from django.db import models
from django.db.models import Q


class ProviderType(models.TextChoices):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    SIMULATED = "simulated"


class BillingClass(models.TextChoices):
    OFFICIAL = "official"  # billed to the tenant's Credit
    ROUTED = "routed"  # billed to the tenant's Wallet


class Model(models.Model):
    """A public model id customers ask for."""

    public_id = models.CharField(max_length=200, unique=True)
    aliases = models.JSONField(default=list, blank=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output = models.PositiveIntegerField(null=True, blank=True)  # reserve for this when max_tokens is absent
    is_hidden = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_id

    class Meta:
        db_table = "routing_model"  # kept from when the routing app held the model


class Channel(models.Model):
    """One upstream account. Its credential is kept encrypted by the vault."""

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    name = models.CharField(max_length=100, unique=True)
    provider_type = models.CharField(max_length=16, choices=ProviderType.choices)
    brand = models.CharField(max_length=50, blank=True, default="")  # e.g. openai, deepseek, azure
    base_url = models.CharField(max_length=500)
    credential = models.TextField(blank=True, default="")  # vault token, never the plain key
    # where import_config read the credential ("env:NAME" or "file:PATH"), so export_config
    # writes the same reference back; empty when it was given inline (add_channel --api-key)
    credential_source = models.CharField(max_length=500, blank=True, default="")
    groups = models.JSONField(default=list)  # tenant groups served; ["default"] unless told
    billing = models.CharField(max_length=8, choices=BillingClass.choices, default=BillingClass.OFFICIAL)
    priority = models.IntegerField(default=0)  # higher is tried first; lower ones are backups
    weight = models.PositiveIntegerField(default=1)  # share of traffic within a priority
    cost_ratio = models.DecimalField(max_digits=8, decimal_places=4, default=1)  # operator cost / list price
    discount_ratio = models.DecimalField(max_digits=8, decimal_places=4, default=1)  # customer price factor (routed)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED)
    status_reason = models.CharField(max_length=300, blank=True, default="")
    status_changed_at = models.DateTimeField(null=True, blank=True)
    connect_timeout_s = models.FloatField(null=True, blank=True)  # None: the setting's default
    first_byte_timeout_s = models.FloatField(null=True, blank=True)
    idle_timeout_s = models.FloatField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)  # provider quirks (azure api_version, ...)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "routing_channel"  # kept from when the routing app held the model
        constraints = [
            models.CheckConstraint(condition=Q(weight__gte=1), name="channel_weight_positive"),
            models.CheckConstraint(condition=Q(cost_ratio__gte=0), name="channel_cost_ratio_nonneg"),
            models.CheckConstraint(condition=Q(discount_ratio__gte=0), name="channel_discount_nonneg"),
        ]

    def __str__(self) -> str:
        return self.name


class ChannelModel(models.Model):
    """A model a channel serves, and the name the upstream knows it by."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="channel_models")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="channel_models")
    upstream_name = models.CharField(max_length=200)
    is_enabled = models.BooleanField(default=True)

    class Meta:
        db_table = "routing_channelmodel"  # kept from when the routing app held the model
        constraints = [models.UniqueConstraint(fields=["channel", "model"], name="channelmodel_once")]

    def __str__(self) -> str:
        return f"{self.channel} → {self.model} ({self.upstream_name})"


class DisableKind(models.TextChoices):
    """Why TokenHub (not an operator) disabled a channel; the jobs undo only these."""

    NONE = "", "not disabled automatically"
    AUTH = "auth", "upstream refused the credential"
    QUOTA = "quota", "upstream account has no balance left"
    ERROR_RATE = "error_rate", "error rate over the window"
    BALANCE = "balance", "balance monitor saw zero"


class ChannelHealth(models.Model):
    """What the background jobs know about a channel: whether TokenHub disabled it and why
    (the reason and time are on the channel itself), its last probe, its balance warning.
    Made on first need; live cooldowns are not here (see channels.health)."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="health")
    auto_disabled_kind = models.CharField(max_length=16, choices=DisableKind.choices, blank=True, default="")
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_probe_ok = models.BooleanField(null=True, blank=True)
    last_probe_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_probe_error = models.CharField(max_length=300, blank=True, default="")
    probe_failures = models.PositiveIntegerField(default=0)  # in a row
    balance_warn_below_micros = models.BigIntegerField(null=True, blank=True)  # None: BALANCE_WARN_BELOW
    is_balance_low = models.BooleanField(default=False)
    # a multi-key channel's keys TokenHub disabled alone: fingerprint -> {"kind", "reason", "at"}
    # (channels.keys; never the key). The channel itself is disabled only when all of them are.
    disabled_keys = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "routing_channelhealth"  # kept from when the routing app held the model
        verbose_name_plural = "channel health"
        constraints = [
            models.CheckConstraint(condition=Q(auto_disabled_kind__in=DisableKind.values), name="channelhealth_kind_known"),
        ]

    def __str__(self) -> str:
        return f"health of {self.channel}"


class ChannelBalanceSnapshot(models.Model):
    """One reading of a channel's balance at its upstream, in that upstream's currency."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="balance_snapshots")
    amount_micros = models.BigIntegerField()  # may be negative: some upstreams let accounts overdraw
    currency = models.CharField(max_length=3)
    source = models.CharField(max_length=32)  # which balance endpoint answered (channels.tasks.BALANCE_READERS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "routing_channelbalancesnapshot"  # kept from when the routing app held the model
        # the admin's "last balance" column and the history page read the newest per channel
        indexes = [models.Index(fields=["channel", "-created_at"], name="balance_by_channel")]
        constraints = [models.CheckConstraint(condition=~Q(currency=""), name="balance_currency_set")]


class ThompsonArm(models.Model):
    """Beta posterior of one (channel, model) route, computed from reward logs by the
    `thompson_refresh` job; web processes add what they saw since `computed_at`."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="thompson_arms")
    model = models.CharField(max_length=200)  # public model id
    alpha = models.FloatField()  # 1 + decayed successes
    beta = models.FloatField()  # 1 + decayed failures
    attempts = models.PositiveIntegerField(default=0)  # raw count in the window, for display
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "routing_thompsonarm"  # kept from when the routing app held the model
        constraints = [
            models.UniqueConstraint(fields=["channel", "model"], name="thompsonarm_once"),
            models.CheckConstraint(condition=Q(alpha__gt=0, beta__gt=0), name="thompsonarm_positive"),
        ]
