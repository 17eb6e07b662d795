from __future__ import annotations

from .writer import request_logs


def request_log_submit(*, entry: dict) -> None:
    """Queue one request log (fields of RequestLog); written within REQUEST_LOG_FLUSH_S."""
    request_logs.submit(entry)


def request_logs_flush() -> int:
    return request_logs.flush()
