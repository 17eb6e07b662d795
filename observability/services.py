from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from common.db import delete_in_batches, rows_ainsert, rows_insert

from .events import decision_event, event_publish
from .metrics import request_observe
from .models import AuditRecord, RequestLog, RewardLog
from .redact import redact
from .writer import access_lines, flush_all, request_logs, writers_aclose, writers_on_loop


def request_log_submit(*, entry: dict) -> None:
    """Queue one request log (fields of RequestLog); written within REQUEST_LOG_FLUSH_S. It
    also counts in the Prometheus metrics, queues the access line and publishes the routing
    decision to the live stream: each only appends to an in-process queue."""
    request_observe(entry)
    request_logs.submit(entry)
    access_lines.submit(entry)
    event_publish(decision_event(entry))


def request_logs_flush() -> int:
    return request_logs.flush()


def log_writers_on_loop() -> list[str]:
    """The log writers (request, access and reward logs) write from the running event loop from
    now on, where the database lets them (PostgreSQL): a web process's startup. Returns which."""
    return writers_on_loop()


def log_writers_flush() -> int:
    """Write every log still pending in this process (request logs, access lines, reward
    logs): a web process's stop. Returns how many."""
    return flush_all()


async def log_writers_aclose() -> None:
    """Stop the loop's log writers (each finishes the batch it is writing); the rest is left
    for the flushes."""
    await writers_aclose()


def audit_record(
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | int | None,
    before: dict | None,
    after: dict | None,
    target_repr: str = "",
) -> AuditRecord:
    """Append one operator mutation to the audit log. `before` and `after` are field dicts;
    secrets in them (credentials, key hashes, tokens, codes) are redacted here, whatever the
    caller passed. Called by the admin (observability.admin_audit), the commands (common.cli)
    and the management API."""
    if not actor:
        raise ValueError("an audit record needs an actor")
    return AuditRecord.objects.create(
        actor=actor[:200],
        action=action[:100],
        target_type=target_type[:100],
        target_id="" if target_id is None else str(target_id)[:64],
        target_repr=redact(str(target_repr))[:200],
        before=redact(before) if before is not None else None,
        after=redact(after) if after is not None else None,
        created_at=timezone.now(),
    )


def reward_logs_write(*, entries: list[dict]) -> None:
    """Store a batch of reward logs (the reward writer's flush); one already stored is skipped."""
    rows_insert(RewardLog, entries)


async def reward_logs_awrite(*, entries: list[dict]) -> None:
    """reward_logs_write from the event loop (the writer's task, on PostgreSQL)."""
    await rows_ainsert(RewardLog, entries)


def logs_delete_before(*, before: datetime) -> dict:
    """Delete request and reward logs created before `before`; returns the counts."""
    return {
        "request_logs": delete_in_batches(RequestLog.objects.filter(created_at__lt=before)),
        "reward_logs": delete_in_batches(RewardLog.objects.filter(created_at__lt=before)),
    }
