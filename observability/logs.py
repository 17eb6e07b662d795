"""Structured logs: every line a JSON object (LOG_FORMAT=json, the default) or a readable
console line (LOG_FORMAT=console, what `make run` sets), through structlog's formatter on top of
the standard logging module, so Django's, Celery's and our own `logging` calls all come out
the same way. The request id bound by routing.app (`request_id_bind`) is on every line logged
while a /v1 request runs.

The access log (`tokenhub.access`, one line per /v1 request) goes through a queue: the request
only appends a record, and a listener thread formats and writes it."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue

import structlog

ACCESS_LOGGER = "tokenhub.access"
ACCESS_QUEUE_SIZE = 10_000
access = logging.getLogger(ACCESS_LOGGER)

# Fields of a request log entry that the access line carries (no key, no prompt).
ACCESS_FIELDS = (
    "request_id", "tenant_id", "endpoint", "model", "channel_name", "status", "error_class",
    "latency_ms", "ttft_ms", "overhead_ms", "prompt_tokens", "completion_tokens", "cost_micros",
    "currency", "is_stream",
)


def _shared_processors() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def formatter(*, log_format: str) -> structlog.stdlib.ProcessorFormatter:
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    elif log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        raise ValueError(f"LOG_FORMAT must be json or console, not {log_format!r}")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def logging_config(*, log_format: str, level: str) -> dict:
    """The LOGGING dict for relay/settings.py."""
    formatter(log_format=log_format)  # refuse a bad LOG_FORMAT at start, naming the key
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "observability.logs.formatter", "log_format": log_format}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"},
            "access": {"()": "observability.logs.QueuedHandler", "log_format": log_format},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            ACCESS_LOGGER: {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def structlog_configure() -> None:
    """structlog's own loggers hand their events to the standard logging module, so they share
    its handlers and this module's formatter."""
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class QueuedHandler(logging.handlers.QueueHandler):
    """Appends records to a bounded queue; a listener thread writes them to stderr. A full
    queue drops the line (counted in `dropped`) rather than make a request wait."""

    def __init__(self, *, log_format: str) -> None:
        super().__init__(queue.Queue(maxsize=ACCESS_QUEUE_SIZE))
        self.dropped = 0
        target = logging.StreamHandler()
        target.setFormatter(formatter(log_format=log_format))
        self.listener = logging.handlers.QueueListener(self.queue, target, respect_handler_level=False)
        self.listener.start()
        atexit.register(self.listener.stop)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted by the listener, off the request's path

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def access_log(entry: dict) -> None:
    """One access line for a /v1 request, from its request log entry (no database work)."""
    access.info("request", extra={name: entry.get(name) for name in ACCESS_FIELDS})


def request_id_bind(request_id: str) -> None:
    """Every line logged from here on in this request's task carries its id."""
    structlog.contextvars.bind_contextvars(request_id=request_id)
