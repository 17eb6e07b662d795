from django.db import models


class IdempotencyRecord(models.Model):
    """A POST under /v1 sent with an Idempotency-Key, when Redis is not configured (with Redis
    the same record lives there). One per (tenant, key): the constraint is what makes a second
    concurrent request wait instead of going upstream."""

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    tenant_id = models.BigIntegerField()
    key_hash = models.CharField(max_length=64)  # SHA-256 of the client's key: bounded, and never shown
    fingerprint = models.CharField(max_length=64)  # SHA-256 of method, path and body
    owner = models.CharField(max_length=32)  # the request that claimed it (only it may release it)
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    media_type = models.CharField(max_length=100, blank=True, default="")
    is_stream = models.BooleanField(default=False)
    body = models.BinaryField(default=b"")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)  # the retention job deletes past this

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "key_hash"], name="idempotency_once_per_tenant_key")]
