from __future__ import annotations

from .metrics import request_observe
from .writer import request_logs


def request_log_submit(*, entry: dict) -> None:
    """Queue one request log (fields of RequestLog); written within REQUEST_LOG_FLUSH_S. It
    also counts in the Prometheus metrics."""
    request_observe(entry)
    request_logs.submit(entry)


def request_logs_flush() -> int:
    return request_logs.flush()
