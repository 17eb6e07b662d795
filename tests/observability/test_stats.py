"""Rolling statistics per model, channel and tenant equal what the request log holds for the
same window (counted here in Python from the rows themselves)."""

import math
import random
import statistics
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from billing.services import exchange_rate_set
from observability.models import RequestLog
from observability.stats import DIMENSIONS, WINDOWS_S, stats_rolling
from channels.models import Channel
from tests.conftest import flush_logs, make_channel, make_price

pytestmark = pytest.mark.django_db(transaction=True)

PRICES_PER_TOKEN = {"gpt-a": (1, 2), "gpt-b": (3, 5)}  # micro-USD per prompt / completion token
RATIOS = {"cheap": Decimal("0.5"), "full": Decimal("1")}
CNY_PER_USD = 7


def p(values, fraction):
    """percentile_cont's interpolation, by the standard library's inclusive quantiles."""
    values = sorted(values)
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def expected(rows, column, ratios):
    out = {}
    for row in rows:
        key = "" if row[column] is None else str(row[column])
        out.setdefault(key, []).append(row)
    result = {}
    for key, group in out.items():
        answered = [r for r in group if r["channel_id"] is not None and r["status"] < 400]
        upstream = 0
        for r in answered:
            per_prompt, per_completion = PRICES_PER_TOKEN[r["model"]]
            upstream += (r["prompt_tokens"] * per_prompt + r["completion_tokens"] * per_completion) * ratios[r["channel_id"]]
        revenue = sum(r["cost_micros"] if r["currency"] == "USD" else r["cost_micros"] // CNY_PER_USD for r in group)
        ttfts = [r["ttft_ms"] for r in group if r["ttft_ms"] is not None]
        result[key] = {
            "requests": len(group),
            "errors": sum(r["status"] >= 400 for r in group),
            "prompt_tokens": sum(r["prompt_tokens"] for r in group),
            "completion_tokens": sum(r["completion_tokens"] for r in group),
            "latency_p50_ms": p([r["latency_ms"] for r in group], 0.5),
            "latency_p95_ms": p([r["latency_ms"] for r in group], 0.95),
            "ttft_p50_ms": p(ttfts, 0.5),
            "ttft_p95_ms": p(ttfts, 0.95),
            "revenue_usd_micros": revenue,
            "upstream_cost_usd_micros": math.ceil(upstream),
            "margin_usd_micros": revenue - math.ceil(upstream),
        }
    return result


def actual(rows):
    return {
        r.key: {
            "requests": r.requests, "errors": r.errors, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "latency_p50_ms": r.latency_p50_ms, "latency_p95_ms": r.latency_p95_ms, "ttft_p50_ms": r.ttft_p50_ms, "ttft_p95_ms": r.ttft_p95_ms,
            "revenue_usd_micros": r.revenue_usd_micros, "upstream_cost_usd_micros": r.upstream_cost_usd_micros,
            "margin_usd_micros": r.margin_usd_micros,
        }
        for r in rows
    }


def differences(got, want):
    return {
        (key, name): (got.get(key, {}).get(name), value)
        for key, fields in want.items() for name, value in fields.items()
        if got.get(key, {}).get(name) != pytest.approx(value)
    }


def approx(table):
    return {k: {f: pytest.approx(v) if isinstance(v, float) else v for f, v in fields.items()} for k, fields in table.items()}


@pytest.fixture
def priced():
    for model, (per_prompt, per_completion) in PRICES_PER_TOKEN.items():
        make_price(model, str(per_prompt), str(per_completion))  # USD per 1M tokens = micro-USD per token
    exchange_rate_set(currency="CNY", units_per_usd=str(CNY_PER_USD))
    channels = {name: make_channel(name, "http://127.0.0.1:9/v1", models=list(PRICES_PER_TOKEN), cost_ratio=str(ratio)) for name, ratio in RATIOS.items()}
    return {channel.pk: RATIOS[name] for name, channel in channels.items()}


def test_statistics_equal_the_request_log_for_every_window_and_dimension(priced):
    rng = random.Random(13)
    now = timezone.now()
    channels = {pk: Channel.objects.get(pk=pk).name for pk in priced}
    logs = []
    for n in range(300):
        age_s = rng.choice([5, 30, 59, 61, 200, 299, 301, 1800, 3599, 3601, 40000, 86399, 86401, 100000])
        answered = rng.random() < 0.8
        channel_id = rng.choice(list(channels)) if answered else None
        currency = rng.choice(["USD", "CNY"])
        is_stream = rng.random() < 0.5
        logs.append(RequestLog(
            request_id=f"req_{n}", tenant_id=rng.choice([1, 2, 3]), key_id=1, model=rng.choice(list(PRICES_PER_TOKEN)),
            channel_id=channel_id, channel_name=channels.get(channel_id, ""),
            status=rng.choice([200, 200, 200, 499, 502]) if answered else 503,
            prompt_tokens=rng.randint(0, 2000), completion_tokens=rng.randint(0, 800),
            cost_micros=rng.randint(0, 500) * (CNY_PER_USD if currency == "CNY" else 1), currency=currency,
            latency_ms=rng.randint(20, 9000), ttft_ms=rng.randint(5, 900) if is_stream else None, is_stream=is_stream,
            created_at=now - timedelta(seconds=age_s),
        ))
    RequestLog.objects.bulk_create(logs)
    held = list(RequestLog.objects.values())
    assert len(held) == 300
    for window, seconds in WINDOWS_S.items():
        in_window = [r for r in held if now - timedelta(seconds=seconds) < r["created_at"] <= now]
        for dimension, column in DIMENSIONS.items():
            got = actual(stats_rolling(dimension=dimension, window=window, cost_ratios=priced, now=now))
            want = expected(in_window, column, priced)
            assert got == approx(want), (window, dimension, differences(got, want))


def test_statistics_count_real_requests(relay, alice, upstream_factory, priced):
    upstream = upstream_factory(name="stats-up", chunks=3)
    make_channel("stats", upstream.url + "/v1", models=["gpt-a"], priority=100, cost_ratio="0.25")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="gpt-a", messages=[{"role": "user", "content": "hello there"}])
    stream = client.chat.completions.create(model="gpt-a", messages=[{"role": "user", "content": "hi"}], stream=True)
    for _ in stream:
        pass
    flush_logs()
    ratios = {**priced, Channel.objects.get(name="stats").pk: Decimal("0.25")}
    held = list(RequestLog.objects.values())
    assert len(held) == 4
    rows = stats_rolling(dimension="channel", window="1m", cost_ratios=ratios)
    assert actual(rows) == approx(expected(held, "channel_name", {**ratios}))
    assert rows[0].requests == 4 and rows[0].revenue_usd_micros > rows[0].upstream_cost_usd_micros > 0
    assert rows[0].ttft_p50_ms is not None


def test_the_admin_page_shows_them(client, priced):
    RequestLog.objects.create(request_id="req_1", model="gpt-a", channel_id=None, status=503, created_at=timezone.now(), latency_ms=12)
    client.force_login(User.objects.create_superuser("op", "op@example.com", "a-long-password-1"))
    page = client.get("/admin/channels/channel/stats/?by=model&window=5m")
    assert page.status_code == 200
    assert b"gpt-a" in page.content and b"<b>5m</b>" in page.content
    assert client.get("/admin/channels/channel/stats/?by=nonsense&window=forever").status_code == 200  # falls back to the defaults


def test_it_rejects_an_unknown_window_or_dimension():
    with pytest.raises(ValueError):
        stats_rolling(dimension="key", window="1h", cost_ratios={})
    with pytest.raises(ValueError):
        stats_rolling(dimension="model", window="7d", cost_ratios={})
