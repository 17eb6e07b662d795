"""Reads of request and reward logs: the portal's (always within one tenant), the management
API's, and what channels' health and admin pages need (never channels reading the models)."""

from __future__ import annotations

from datetime import datetime

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate, TruncHour, TruncMinute

from providers.base import ErrorKind

from .models import RequestLog, RewardLog


def _of_tenant(tenant_id: int, since: datetime | None, until: datetime | None):
    logs = RequestLog.objects.filter(tenant_id=tenant_id)
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    if until is not None:
        logs = logs.filter(created_at__lt=until)
    return logs


def usage_rows(*, tenant_id: int, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
    """Requests, tokens and cost by day (UTC), model, key and the currency that paid."""
    rows = (
        _of_tenant(tenant_id, since, until)
        .annotate(day=TruncDate("created_at"))
        .values("day", "model", "key_id", "balance_kind", "currency")
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost_micros=Sum("cost_micros"),
        )
        .order_by("-day", "model", "key_id")
    )
    return list(rows)


def request_logs_page(
    *,
    tenant_id: int,
    page: int = 1,
    per_page: int = 50,
    key_id: int | None = None,
    model: str = "",
    status: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page:
    logs = _of_tenant(tenant_id, since, until).order_by("-created_at", "-id")
    if key_id is not None:
        logs = logs.filter(key_id=key_id)
    if model:
        logs = logs.filter(model=model)
    if status is not None:
        logs = logs.filter(status=status)
    return Paginator(logs.defer("candidates"), per_page).get_page(page)


def request_log_get(*, tenant_id: int, log_id: int) -> RequestLog:
    """Raises RequestLog.DoesNotExist for another tenant's log."""
    return RequestLog.objects.get(tenant_id=tenant_id, pk=log_id)


def request_log_models(*, tenant_id: int) -> list[str]:
    return sorted(m for m in RequestLog.objects.filter(tenant_id=tenant_id).values_list("model", flat=True).distinct() if m)


def attempts_public(log: RequestLog) -> list[dict]:
    """A request's attempts in the customer's terms: what happened and how long it took, never
    which channel or upstream served it."""
    return [
        {
            "number": n,
            "outcome": attempt.get("outcome") or "",
            "error": attempt.get("error_class") or "",
            "latency_ms": attempt.get("latency_ms"),
        }
        for n, attempt in enumerate(log.attempts or (), start=1)
    ]


def channel_has_history(*, channel_id: int) -> bool:
    """Whether any request was sent to (or logged against) this channel."""
    return RequestLog.objects.filter(channel_id=channel_id).exists() or RewardLog.objects.filter(channel_id=channel_id).exists()


def channels_with_history(*, channel_ids: list[int]) -> set[int]:
    found = set(RequestLog.objects.filter(channel_id__in=channel_ids).values_list("channel_id", flat=True))
    return found | set(RewardLog.objects.filter(channel_id__in=channel_ids).values_list("channel_id", flat=True))


def request_logs_for(*, tenant_id: int, model: str | None = None, status: int | None = None, key_id: int | None = None,
                     since=None, until=None, before_id: int | None = None):
    """A tenant's request logs, newest first, filtered."""
    logs = RequestLog.objects.filter(tenant_id=tenant_id).order_by("-id")
    if model:
        logs = logs.filter(model=model)
    if status is not None:
        logs = logs.filter(status=status)
    if key_id is not None:
        logs = logs.filter(key_id=key_id)
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    if until is not None:
        logs = logs.filter(created_at__lt=until)
    if before_id is not None:
        logs = logs.filter(pk__lt=before_id)
    return logs


def reward_attempt_counts(*, since: datetime) -> list[dict]:
    """Per channel, the scored attempts logged after `since` (`total`) and how many of them
    failed transiently (`errors`: 5xx, timeouts, connection), as
    `{"channel_id", "total", "errors"}` rows."""
    rows = (
        RewardLog.objects.filter(created_at__gt=since, reward__isnull=False)
        .values("channel_id")
        .annotate(total=Count("id"), errors=Count("id", filter=Q(outcome=ErrorKind.TRANSIENT.value)))
        .order_by("channel_id")
    )
    return list(rows)


def reward_counts_by_bucket(*, since: datetime, until: datetime, bucket: str) -> list[dict]:
    """Scored attempts with `since < created_at <= until`, counted per channel, model and time
    bucket (`"minute"` or `"hour"`, truncated in the database, portable to SQLite and PostgreSQL):
    rows of `{"channel_id", "model", "bucket", "successes", "total"}`, a success being a reward of
    0.5 or more."""
    trunc = {"minute": TruncMinute, "hour": TruncHour}[bucket]
    rows = (
        RewardLog.objects.filter(created_at__gt=since, created_at__lte=until, reward__isnull=False)
        .annotate(bucket=trunc("created_at"))
        .values("channel_id", "model", "bucket")
        .annotate(successes=Count("id", filter=Q(reward__gte=0.5)), total=Count("id"))
    )
    return list(rows)


def request_trace(*, request_id: str) -> tuple[RequestLog | None, list[RewardLog]]:
    """One request's log and its attempts' reward logs, in order (operator pages only)."""
    log = RequestLog.objects.filter(request_id=request_id).first() if request_id else None
    rewards = list(RewardLog.objects.filter(request_id=request_id).order_by("attempt")) if log else []
    return log, rewards


def request_logs_recent(*, limit: int = 50) -> list[RequestLog]:
    """The latest request logs of every tenant (operator pages only)."""
    return list(RequestLog.objects.order_by("-created_at")[:limit])
