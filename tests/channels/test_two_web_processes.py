"""Two real web processes (uvicorn, separate Python processes) on one PostgreSQL and Redis
share health: a channel one of them cooled is skipped by the other, and their outcome
counts meet in Redis. Needs REDIS_URL and PostgreSQL."""

import time

import httpx
import pytest
from django.conf import settings as django_settings

from tests.conftest import make_channel, make_price

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="shared health needs REDIS_URL (the scale-out run)")



def ask(url, key):
    return httpx.post(url + "/v1/chat/completions", json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_two_web_processes_share_cooldown_and_health(webs, alice, upstreams):
    from observability.models import RequestLog
    from channels.health.board import board
    from channels.models import Channel

    primary, backup = upstreams("primary", "backup", chunks=1)
    make_price("gpt-test", "1", "2")
    make_channel("primary", primary.url + "/v1", models=["gpt-test"], priority=10)
    make_channel("backup", backup.url + "/v1", models=["gpt-test"], priority=0)
    web_a, web_b = webs
    # both processes see the new channels and prices once their tables refresh (on age)
    for web in webs:
        deadline = time.monotonic() + 15
        while (answer := ask(web, alice.key)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.json()["choices"][0]["message"]["content"] == primary.text, answer.text
    warmed = len(primary.requests)

    primary.set_mode("429", retry_after="30")
    first = ask(web_a, alice.key)
    assert first.json()["choices"][0]["message"]["content"] == backup.text
    asked = len(primary.requests)

    time.sleep(django_settings.ROUTING_HEALTH_CACHE_S + 0.1)  # web-b's last health read has aged out
    second = ask(web_b, alice.key)
    assert second.json()["choices"][0]["message"]["content"] == backup.text
    assert len(primary.requests) == asked  # web-b never tried the channel web-a cooled

    # the test process (a third one) sees the same cooldown
    pk = Channel.objects.get(name="primary").pk
    cooldown = board.cooldown(pk)
    assert cooldown is not None and 25 < cooldown.until - time.time() <= 30.01

    # and web-b's request log says why it skipped the primary
    deadline = time.monotonic() + 10
    log = None
    while time.monotonic() < deadline and log is None:
        log = RequestLog.objects.filter(request_id=second.headers["x-request-id"]).first()
        time.sleep(0.1)
    skipped = [c for c in log.candidates if not c["eligible"]]
    assert skipped and skipped[0]["channel"] == "primary" and "rate limited (429)" in skipped[0]["reason"]

    # success counts from both processes meet in Redis (each flushes every ROUTING_HEALTH_FLUSH_S)
    time.sleep(django_settings.ROUTING_HEALTH_FLUSH_S + 1.0)
    backup_pk = Channel.objects.get(name="backup").pk
    view = board.view("gpt-test", [pk, backup_pk], fresh=True)
    assert view.pair(backup_pk, "gpt-test").attempts == pytest.approx(2)
    assert view.pair(pk, "gpt-test").attempts == pytest.approx(warmed + 1)  # the warm-up successes and the 429
    assert view.state(pk, "gpt-test") == "down"
