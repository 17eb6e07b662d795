"""The error-rate sweep: disable channels whose recent attempts mostly failed."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as tz

from django.conf import settings

from observability.selectors import reward_attempt_counts

from ..models import Channel, DisableKind
from .status import channel_auto_disable


def error_rate_sweep(*, now=None) -> list[dict]:
    """Disable channels whose attempts over ROUTING_ERROR_WINDOW_S failed at
    ROUTING_DISABLE_ERROR_RATE or more (transient errors: 5xx, timeouts, connection), over at
    least ROUTING_DISABLE_MIN_ATTEMPTS attempts: never for one stray error."""
    now = now or datetime.now(tz.utc)
    since = now - timedelta(seconds=settings.ROUTING_ERROR_WINDOW_S)
    rows = reward_attempt_counts(since=since)
    enabled = set(Channel.objects.filter(status=Channel.Status.ENABLED).values_list("pk", flat=True))
    disabled = []
    for row in rows:
        total, errors = row["total"], row["errors"]
        if row["channel_id"] not in enabled or total < settings.ROUTING_DISABLE_MIN_ATTEMPTS:
            continue
        rate = errors / total
        if rate >= settings.ROUTING_DISABLE_ERROR_RATE:
            minutes = settings.ROUTING_ERROR_WINDOW_S / 60
            reason = f"error rate {rate:.0%} ({errors} of {total} attempts) over the last {minutes:g} min"
            if channel_auto_disable(channel_id=row["channel_id"], kind=DisableKind.ERROR_RATE, reason=reason):
                disabled.append({"channel_id": row["channel_id"], "reason": reason})
    return disabled
