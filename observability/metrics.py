"""Prometheus metrics (`/metrics`). Names carry the `tokenhub_` prefix and base units; labels
never hold a tenant, user or key id (unbounded, and private). Several web processes share one
view when PROMETHEUS_MULTIPROC_DIR is set (the client's multiprocess mode)."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1)

REQUESTS = Counter("tokenhub_requests_total", "Requests answered on /v1", ["endpoint", "status"])
ATTEMPTS = Counter("tokenhub_upstream_attempts_total", "Upstream attempts by channel and outcome", ["channel", "outcome"])
TOKENS = Counter("tokenhub_tokens_total", "Tokens metered", ["model", "kind"])
CHARGED = Counter("tokenhub_charged_micros_total", "Money charged, in micro-units of the balance's currency", ["currency"])
LATENCY = Histogram("tokenhub_request_duration_seconds", "Whole request time", ["endpoint"], buckets=LATENCY_BUCKETS_S)
OVERHEAD = Histogram("tokenhub_overhead_seconds", "Time spent in TokenHub itself, upstream excluded", buckets=OVERHEAD_BUCKETS_S)
TTFT = Histogram("tokenhub_time_to_first_token_seconds", "Streams: time to the first chunk", buckets=LATENCY_BUCKETS_S)


_children: dict = {}


def _child(metric, *labels):
    """`metric.labels(*labels)`, kept: the client validates the labels and takes a lock on
    every call, six times per request."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def request_observe(entry: dict) -> None:
    """Count one request from its log entry (see observability.services.request_log_submit)."""
    endpoint = entry["endpoint"]
    _child(REQUESTS, endpoint, str(entry["status"])).inc()
    _child(LATENCY, endpoint).observe(entry["latency_ms"] / 1000.0)
    OVERHEAD.observe(entry["overhead_ms"] / 1000.0)
    if entry.get("ttft_ms") is not None:
        TTFT.observe(entry["ttft_ms"] / 1000.0)
    for attempt in entry["attempts"]:
        _child(ATTEMPTS, str(attempt["channel"]), str(attempt["outcome"])).inc()
    model = entry["model"]
    if entry["prompt_tokens"]:
        _child(TOKENS, model, "prompt").inc(entry["prompt_tokens"])
    if entry["completion_tokens"]:
        _child(TOKENS, model, "completion").inc(entry["completion_tokens"])
    if entry["cost_micros"]:
        _child(CHARGED, entry["currency"]).inc(entry["cost_micros"])


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
