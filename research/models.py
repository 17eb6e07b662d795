"""A research run: a question answered in sections with cited sources, by model calls that go
through the relay's own /v1 as the tenant (see `research.services`)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

MAX_DEPTH = 8  # sub-questions per run; the form and the constraint agree


class ResearchRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        STOPPED = "stopped"  # the balance or the run's cost ceiling ran out: a partial report
        FAILED = "failed"

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="research_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    question = models.TextField()
    depth = models.PositiveSmallIntegerField(default=3)
    model_ids = models.JSONField(default=list)  # public model ids; the first plans and summarises
    mode = models.CharField(max_length=32, default="single")  # single, or an orchestration model name
    sources = models.JSONField(default=list)  # [{"title", "url", "text"}] given by the customer
    use_web_search = models.BooleanField(default=False)
    max_cost_micros = models.BigIntegerField()  # the run's ceiling, Credit-currency micros
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=200, blank=True, default="")
    steps_done = models.PositiveSmallIntegerField(default=0)
    steps_total = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    report = models.JSONField(default=dict)  # {"title", "summary", "sections", "citations", "models_used"}
    request_ids = models.JSONField(default=list)  # x-request-id of every call the run made
    key_id = models.BigIntegerField(null=True, blank=True)  # the run's internal API key (revoked at the end)
    cost_micros = models.BigIntegerField(default=0)  # what the run's key was charged, Credit-currency micros
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # the worker's last sign of life
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(depth__gte=1, depth__lte=MAX_DEPTH), name="research_depth_bounded"),
            models.CheckConstraint(condition=Q(max_cost_micros__gt=0), name="research_ceiling_positive"),
            models.CheckConstraint(condition=Q(cost_micros__gte=0), name="research_cost_nonneg"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "stopped", "failed"]), name="research_status_known"
            ),
        ]
        indexes = [
            # the reaper's query: unfinished runs by heartbeat
            models.Index(fields=["status", "heartbeat_at"], name="research_by_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"research run {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)
