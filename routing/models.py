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
        constraints = [models.UniqueConstraint(fields=["channel", "model"], name="channelmodel_once")]

    def __str__(self) -> str:
        return f"{self.channel} → {self.model} ({self.upstream_name})"
