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
    # what the upstream reported beyond what the request could have cost (not billed), and the
    # charge that part would have made: the operator's to take up with the upstream
    upstream_discrepancy = models.CharField(max_length=300, blank=True, default="")
    unbilled_micros = models.BigIntegerField(default=0)
    balance_kind = models.CharField(max_length=8, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True)
    overhead_ms = models.FloatField(default=0)
    is_stream = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    directives = models.JSONField(default=dict, blank=True)  # the X-TokenHub-* / @tokenhub directives it carried
    parent_request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)  # an orchestration step's run
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["tenant_id", "-created_at"], name="reqlog_by_tenant")]


class RewardLog(models.Model):
    """One upstream attempt and how it went: the Thompson sampler learns from these, and the
    health sweep computes error rates from them. Written in batches, like request logs."""

    request_id = models.CharField(max_length=64)
    attempt = models.PositiveSmallIntegerField()  # 1 for the first route tried
    channel_id = models.BigIntegerField()
    model = models.CharField(max_length=200)  # public model id
    mode = models.CharField(max_length=32, blank=True, default="")
    outcome = models.CharField(max_length=32)  # ok, or the error kind (rate_limited, transient, auth, ...)
    reward = models.FloatField(null=True)  # 1 success, 0 the channel failed, None: not the channel's doing
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request_id", "attempt"], name="rewardlog_once"),
            models.CheckConstraint(
                condition=models.Q(reward__isnull=True) | models.Q(reward__gte=0, reward__lte=1), name="rewardlog_reward_unit"
            ),
        ]
        # thompson_refresh and the error-rate sweep read a window of recent rewards per route
        indexes = [models.Index(fields=["created_at", "channel_id"], name="reward_by_time")]


class AuditRecord(models.Model):
    """One operator mutation (admin, command or management API): who did what to which object,
    with its fields before and after, secrets redacted. Append-only: a PostgreSQL trigger
    refuses UPDATE and DELETE, and the admin offers neither."""

    actor = models.CharField(max_length=200)  # a user name, "token:<operator token name>" or "cli:<os user>"
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100)  # app_label.model, or what a command acted on
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(actor=""), name="audit_actor_named"),
            models.CheckConstraint(condition=~models.Q(action=""), name="audit_action_named"),
        ]
        # the admin's "history of this object" filter
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_by_target")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target_type} {self.target_id}"
