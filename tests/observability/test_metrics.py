"""/metrics: Prometheus text for loopback clients, others only with METRICS_TOKEN."""

import httpx
import openai

from routing.app import metrics_allowed
from tests.conftest import make_channel, make_price


def test_metrics_count_requests_tokens_and_money(relay, alice, upstream_factory):
    upstream = upstream_factory(name="metered", chunks=4)
    make_price("gpt-metered", "1", "2")
    make_channel("metered", upstream.url + "/v1", models=["gpt-metered"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    client.chat.completions.create(model="gpt-metered", messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(relay.url + "/metrics").text
    assert 'tokenhub_requests_total{endpoint="chat.completions",status="200"}' in text
    assert 'tokenhub_upstream_attempts_total{channel="metered",outcome="ok"}' in text
    assert 'tokenhub_tokens_total{kind="completion",model="gpt-metered"}' in text
    assert "tokenhub_overhead_seconds_bucket" in text
    assert "alice" not in text  # no tenant or key in a label


def test_only_loopback_or_the_token_may_read_metrics(settings):
    settings.METRICS_TOKEN = ""
    assert metrics_allowed("127.0.0.1", None) and metrics_allowed("::1", None)
    assert not metrics_allowed("203.0.113.5", None)
    assert not metrics_allowed("203.0.113.5", "")
    settings.METRICS_TOKEN = "s3cret-metrics"
    assert not metrics_allowed("203.0.113.5", "wrong")
    assert metrics_allowed("203.0.113.5", "s3cret-metrics")
