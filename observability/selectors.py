from __future__ import annotations

from .models import RequestLog, RewardLog


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
