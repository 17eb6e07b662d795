"""Structured logs: every line a JSON object (LOG_FORMAT=json, the default) or a readable
console line (LOG_FORMAT=console, what `make run` sets), through structlog's formatter on top of
the standard logging module, so Django's, Celery's and our own `logging` calls all come out
the same way. The request id bound by routing.app (`request_id_bind`) is on every line logged
while a /v1 request runs.

The access log (`tokenhub.access`, one line per /v1 request) is written in batches by a thread
(observability.writer.access_lines): the request only appends its entry to a queue. A thread
woken per line would take the interpreter lock from the event loop at every request (a first version
did; one noisy bench run showed req/s at 32 concurrent requests well down; not measured cleanly)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson
import structlog

from .redact import text_redact

ACCESS_LOGGER = "tokenhub.access"
access = logging.getLogger(ACCESS_LOGGER)

# Fields of a request log entry that the access line carries (no key, no prompt).
ACCESS_FIELDS = (
    "request_id", "tenant_id", "endpoint", "model", "channel_name", "status", "error_class",
    "latency_ms", "ttft_ms", "overhead_ms", "prompt_tokens", "completion_tokens", "cost_micros",
    "currency", "is_stream",
)
ACCESS_LINE_FIELDS = (*ACCESS_FIELDS, "at")


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


class SecretsFilter(logging.Filter):
    """Secrets out of log lines. Django attaches the request to django.request's records
    ("Unauthorized: /api/v1/..."), and its repr is the full path, query string included: a
    token sent as `?token=tho-...` would be written whole. The request becomes its redacted repr
    and a plain message is redacted the same way (observability.redact.text_redact)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is not None and not isinstance(request, str):
            record.request = text_redact(repr(request))
        if isinstance(record.msg, str):  # structlog's own events are dicts, left to it
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True  # a malformed call: the formatter reports it, a filter must not raise
            redacted = text_redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class AccessJsonFormatter(logging.Formatter):
    """The access line as JSON with the same keys structlog's formatter gives, built directly:
    a tenth of the CPU of the general formatter, and there is one line per request."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in ACCESS_LINE_FIELDS:
            line[name] = getattr(record, name, None)
        return orjson.dumps(line).decode()


def logging_config(*, log_format: str, level: str) -> dict:
    """The LOGGING dict for relay/settings.py."""
    formatter(log_format=log_format)  # refuse a bad LOG_FORMAT at start, naming the key
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {"()": "observability.logs.formatter", "log_format": log_format},
            "access": (
                {"()": "observability.logs.AccessJsonFormatter"}
                if log_format == "json"
                else {"()": "observability.logs.formatter", "log_format": log_format}
            ),
        },
        "filters": {"secrets": {"()": "observability.logs.SecretsFilter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured", "filters": ["secrets"]},
            "access": {"class": "logging.StreamHandler", "formatter": "access"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # client libraries log every call at INFO (stripe: each request and retry)
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            "stripe": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            # on the logger too, so that every handler (not only ours) gets the redacted record
            "django.request": {"filters": ["secrets"]},
            ACCESS_LOGGER: {"handlers": ["access"], "level": "INFO", "propagate": False},  # whatever LOG_LEVEL says
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


def access_write(entry: dict) -> None:
    """One access line for a /v1 request, from its request log entry (no database work).
    Called by the access-log writer thread (observability.writer), not by the request; `at`
    is when the request began, `timestamp` when the line was written."""
    fields = {name: entry.get(name) for name in ACCESS_FIELDS}
    fields["at"] = entry["created_at"].isoformat()
    access.info("request", extra=fields)


def request_id_bind(request_id: str) -> None:
    """Every line logged from here on in this request's task carries its id."""
    structlog.contextvars.bind_contextvars(request_id=request_id)
