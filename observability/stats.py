"""Rolling statistics from the request log: per model, channel or tenant over a window ending
now (1 m, 5 m, 1 h, 24 h). Counts and sums are SQL aggregates over the indexed `created_at`;
latency and time-to-first-token percentiles are PostgreSQL's `percentile_cont` (on SQLite, the
embedded default, the same interpolation in Python over the window's values).

Money, in micro-USD:
- revenue: what requests were charged, converted from each balance's currency at today's rate;
- upstream cost: the requests' tokens at today's list price (base tier), times the channel's
  cost ratio (`add_channel --cost-ratio`; passed in by the caller, which owns channels);
- margin: revenue minus upstream cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Q, Sum
from django.utils import timezone

from billing.money import decimal_ceil
from billing.pricing import list_cost_micros
from billing.ratecard import ratecard_get

from .models import RequestLog

WINDOWS_S = {"1m": 60, "5m": 300, "1h": 3600, "24h": 86400}
DIMENSIONS = {"model": "model", "channel": "channel_name", "tenant": "tenant_id"}
ERROR_STATUS = 400  # a status at or above this is an error (499: the client went away)


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile (linear interpolation between the closest ranks)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, *, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The same interpolation as percentile_cont, for a sorted list."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass
class StatsRow:
    key: str
    requests: int = 0
    errors: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    revenue_usd_micros: int = 0
    upstream_cost_usd_micros: int = 0
    unconverted_currencies: list[str] = field(default_factory=list)  # charged in a currency with no rate

    @property
    def margin_usd_micros(self) -> int:
        return self.revenue_usd_micros - self.upstream_cost_usd_micros

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def stats_rolling(
    *, dimension: str, window: str, cost_ratios: dict[int, Decimal], now: datetime | None = None
) -> list[StatsRow]:
    """One row per value of `dimension` with requests in the window, busiest first.
    `cost_ratios`: channel id -> cost ratio (a channel missing from it counts at 1)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}")
    if window not in WINDOWS_S:
        raise ValueError(f"window must be one of {', '.join(WINDOWS_S)}")
    column = DIMENSIONS[dimension]
    until = now or timezone.now()
    logs = RequestLog.objects.filter(created_at__gt=until - timedelta(seconds=WINDOWS_S[window]), created_at__lte=until)
    rows: dict[str, StatsRow] = {}

    def row(value) -> StatsRow:
        key = "" if value is None else str(value)
        return rows.setdefault(key, StatsRow(key=key))

    for item in logs.values(column).annotate(
        requests=Count("id"),
        errors=Count("id", filter=Q(status__gte=ERROR_STATUS)),
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
    ):
        target = row(item[column])
        target.requests, target.errors = item["requests"], item["errors"]
        target.prompt_tokens, target.completion_tokens = item["prompt"] or 0, item["completion"] or 0
    _percentiles(logs, column, row)

    card = ratecard_get()
    for item in logs.exclude(cost_micros=0).values(column, "currency").annotate(charged=Sum("cost_micros")):
        target = row(item[column])
        rate = card.rate(item["currency"])
        if rate is None or rate <= 0:
            target.unconverted_currencies.append(item["currency"])
            continue
        target.revenue_usd_micros += int((Decimal(item["charged"]) / rate).to_integral_value())

    upstream: dict[str, Decimal] = {}
    answered = logs.filter(channel_id__isnull=False, status__lt=ERROR_STATUS)
    for item in answered.values(column, "model", "channel_id").annotate(
        requests=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cached=Sum("cached_tokens")
    ):
        price = card.prices.get(item["model"])
        if price is None:
            continue
        base = dataclasses.replace(price, tiers=())
        list_micros = list_cost_micros(
            base, prompt_tokens=item["prompt"] or 0, completion_tokens=item["completion"] or 0, cached_tokens=item["cached"] or 0
        ) + base.request_micros * (item["requests"] - 1) * (not base.is_free)
        ratio = cost_ratios.get(item["channel_id"], Decimal(1))
        upstream[row(item[column]).key] = upstream.get(row(item[column]).key, Decimal(0)) + Decimal(list_micros) * ratio
    for key, cost in upstream.items():
        rows[key].upstream_cost_usd_micros = decimal_ceil(cost)  # rounded once, up: a margin is never flattered
    return sorted(rows.values(), key=lambda r: (-r.requests, r.key))


def _percentiles(logs, column: str, row) -> None:
    if connection.vendor == "postgresql":
        for item in logs.values(column).annotate(
            lat50=PercentileCont("latency_ms", fraction=0.5),
            lat95=PercentileCont("latency_ms", fraction=0.95),
            ttft50=PercentileCont("ttft_ms", fraction=0.5),
            ttft95=PercentileCont("ttft_ms", fraction=0.95),
        ):
            target = row(item[column])
            target.latency_p50_ms, target.latency_p95_ms = item["lat50"], item["lat95"]
            target.ttft_p50_ms, target.ttft_p95_ms = item["ttft50"], item["ttft95"]
        return
    latencies: dict = {}
    ttfts: dict = {}
    for value, latency_ms, ttft_ms in logs.values_list(column, "latency_ms", "ttft_ms").iterator():
        latencies.setdefault(value, []).append(latency_ms)
        if ttft_ms is not None:
            ttfts.setdefault(value, []).append(ttft_ms)
    for value, values in latencies.items():
        target = row(value)
        values.sort()
        target.latency_p50_ms, target.latency_p95_ms = percentile(values, 0.5), percentile(values, 0.95)
        ttft = sorted(ttfts.get(value, []))
        target.ttft_p50_ms, target.ttft_p95_ms = percentile(ttft, 0.5), percentile(ttft, 0.95)
