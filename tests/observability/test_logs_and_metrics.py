"""Structured logs and the Django side of /metrics: one JSON access line per /v1 request with
its status, model, channel, overhead and cost; every line logged while a request runs carries
its request id; django-prometheus's series sit next to the tokenhub_* ones."""

import json
import logging
import time

import httpx
import openai
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from observability.logs import ACCESS_LOGGER, formatter, logging_config, request_id_bind
from tests.conftest import flush_logs, make_channel, make_price


class Lines(logging.Handler):
    """Formats each record as it is emitted (in the emitting task's context) into a list."""

    def __init__(self, log_format: str = "json") -> None:
        super().__init__()
        self.setFormatter(formatter(log_format=log_format))
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(self.format(record))

    def json(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def captured():
    handlers = {}

    def attach(name: str) -> Lines:
        handler = handlers[name] = Lines()
        logger = logging.getLogger(name)
        if logger.handlers:  # format as the configured handler does (the access line's own formatter)
            handler.setFormatter(logger.handlers[0].formatter)
        logger.addHandler(handler)
        return handler

    yield attach
    for name, handler in handlers.items():
        logging.getLogger(name).removeHandler(handler)


def test_one_access_line_per_request_with_what_the_operator_needs(relay, alice, upstream_factory, captured):
    access = captured(ACCESS_LOGGER)
    upstream = upstream_factory(name="logged", chunks=2)
    make_price("gpt-logged", "1", "2")
    make_channel("logged", upstream.url + "/v1", models=["gpt-logged"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-logged", messages=[{"role": "user", "content": "hi"}])
    flush_logs()
    lines = [line for line in access.json() if line.get("request_id") == raw.headers["x-request-id"]]
    assert len(lines) == 1
    line = lines[0]
    assert (line["event"], line["logger"], line["status"], line["model"], line["channel_name"]) == ("request", ACCESS_LOGGER, 200, "gpt-logged", "logged")
    assert line["cost_micros"] > 0 and line["currency"] == "USD"
    assert line["overhead_ms"] >= 0 and line["latency_ms"] >= 0 and "timestamp" in line and line["at"].startswith("20")
    assert alice.key not in access.lines[0]


def test_lines_logged_while_a_request_runs_carry_its_request_id(relay, alice, upstream_factory, captured):
    journey = captured("routing.journey")
    failing, working = upstream_factory(name="fails"), upstream_factory(name="works")
    failing.set_mode("500")
    make_price("gpt-failover", "1", "2")
    make_channel("fails", failing.url + "/v1", models=["gpt-failover"], priority=10)
    make_channel("works", working.url + "/v1", models=["gpt-failover"], priority=0)
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-failover", messages=[{"role": "user", "content": "hi"}])
    failed_over = [line for line in journey.json() if "fails" in line["event"]]
    assert failed_over and all(line["request_id"] == raw.headers["x-request-id"] for line in failed_over)


def test_every_answer_carries_a_request_id_of_its_own(relay, transactional_db, captured):
    """Django's answers too (portal, admin redirect, the management API's refusal, their 404s),
    and "/v1" alone is /v1's own 404; a client's X-Request-Id is never taken as ours."""
    warnings = captured("django.request")
    seen = set()
    for path in ("/login/", "/admin/", "/api/v1/tenants", "/no-such-page/", "/healthz/", "/v1", "/v1/models"):
        answer = httpx.get(relay.url + path, headers={"x-request-id": "req_mine"})
        request_id = answer.headers.get("x-request-id", "")
        assert request_id.startswith("req_") and request_id != "req_mine", path
        seen.add(request_id)
    assert len(seen) == 7
    v1_alone = httpx.get(relay.url + "/v1")
    assert v1_alone.status_code == 404 and "error" in v1_alone.json()
    logged = [line for line in warnings.json() if "no-such-page" in line["event"]]
    assert logged and logged[0]["request_id"].startswith("req_")


def test_console_lines_are_for_people_and_json_lines_for_machines():
    record = logging.LogRecord("routing.journey", logging.INFO, __file__, 1, "channel %s failed", ("a",), None)
    request_id_bind("req_console")
    try:
        console = formatter(log_format="console").format(record)
        machine = json.loads(formatter(log_format="json").format(record))
    finally:
        import structlog

        structlog.contextvars.clear_contextvars()
    assert "channel a failed" in console and "req_console" in console and not console.startswith("{")
    assert (machine["event"], machine["request_id"], machine["level"]) == ("channel a failed", "req_console", "info")


def test_a_bad_log_format_is_refused_by_name():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")


def test_django_series_are_served_next_to_the_relay_series(relay, transactional_db):
    User.objects.create_superuser("op", "op@example.com", "a-long-password-1")
    assert httpx.get(relay.url + "/admin/login/").status_code == 200
    httpx.post(relay.url + "/v1/chat/completions", json={})  # a tokenhub_* series too
    text = httpx.get(relay.url + "/metrics").text
    assert 'django_http_requests_total_by_view_transport_method_total{method="GET",transport="http",view="admin:login"}' in text
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in text
    assert "django_db_execute_total" in text  # the database wrapper counts queries
    assert "tokenhub_requests_total" in text and "tokenhub_live_events_dropped_total" in text


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="real web processes share PostgreSQL (the scale-out run)")
def test_a_web_process_in_multiprocess_mode_logs_json_and_serves_both_kinds_of_series(tmp_path, alice, upstream_factory):
    from tests.relay.procs import start_web

    upstream = upstream_factory(name="proc-up")
    make_price("gpt-proc", "1", "2")
    make_channel("proc", upstream.url + "/v1", models=["gpt-proc"])
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    proc, url = start_web(tmp_path, "web-json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), LOG_FORMAT="json")
    try:
        answer = httpx.post(url + "/v1/chat/completions", json={"model": "gpt-proc", "messages": [{"role": "user", "content": "hi"}]},
                            headers={"authorization": f"Bearer {alice.key}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert httpx.get(url + "/admin/login/").status_code == 200
        text = httpx.get(url + "/metrics").text
        assert 'view="admin:login"' in text and 'tokenhub_requests_total{endpoint="chat.completions",status="200"}' in text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
            access = [line for line in lines if line.get("logger") == ACCESS_LOGGER and line.get("request_id") == answer.headers["x-request-id"]]
            if access:
                break
            time.sleep(0.1)
        assert access and access[0]["channel_name"] == "proc" and access[0]["status"] == 200
    finally:
        proc.stop()
