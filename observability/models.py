from django.db import models


class RequestLog(models.Model):
    """One customer request, written off the hot path in batches."""

    request_id = models.CharField(max_length=64, unique=True)
    tenant_id = models.BigIntegerField(null=True, db_index=True)
    key_id = models.BigIntegerField(null=True)
    endpoint = models.CharField(max_length=64, default="chat.completions")
    model = models.CharField(max_length=200, blank=True, default="")
    channel_id = models.BigIntegerField(null=True)
    channel_name = models.CharField(max_length=100, blank=True, default="")
    upstream_model = models.CharField(max_length=200, blank=True, default="")
    attempts = models.JSONField(default=list)  # [{"channel", "outcome", "error_class", "latency_ms"}]
    candidates = models.JSONField(default=list)  # [{"channel", "eligible", "reason"}]
    status = models.PositiveSmallIntegerField()
    error_class = models.CharField(max_length=64, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    is_usage_estimated = models.BooleanField(default=False)
    cost_micros = models.BigIntegerField(default=0)
    balance_kind = models.CharField(max_length=8, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True)
    overhead_ms = models.FloatField(default=0)
    is_stream = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["tenant_id", "-created_at"], name="reqlog_by_tenant")]
