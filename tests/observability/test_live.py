"""The live stream of routing decisions: a real WebSocket client, connected to the real relay
with an operator's session, receives the decision a real /v1 request made; others are refused;
a full queue drops events and counts them instead of making a request wait."""

import asyncio
import json

import openai
import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from prometheus_client import REGISTRY

from observability import events
from observability.ws import LIVE_PATH
from channels.health.status import channel_operator_set
from tests.conftest import make_channel, make_price


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"


def socket_url(relay) -> str:
    return relay.url.replace("http://", "ws://") + "/" + LIVE_PATH


async def receive_until(socket, request_id: str, timeout_s: float = 10.0) -> dict:
    async with asyncio.timeout(timeout_s):
        while True:
            event = json.loads(await socket.recv())
            if event["request_id"] == request_id:
                return event


async def test_a_connected_operator_sees_the_decision_of_a_real_request(relay, alice, upstream_factory):
    upstream = await sync_to_async(upstream_factory)(name="live-up", chunks=2)
    await sync_to_async(make_price)("gpt-live", "1", "2")
    await sync_to_async(make_channel)("live-primary", upstream.url + "/v1", models=["gpt-live"], priority=10)
    await sync_to_async(make_channel)("live-backup", "http://127.0.0.1:9/v1", models=["gpt-live"], priority=0)
    staff = await sync_to_async(User.objects.create_superuser)("watcher", "w@example.com", "a-long-password-1")
    cookie = await sync_to_async(session_cookie)(staff)
    async with websockets.connect(socket_url(relay), additional_headers={"Cookie": cookie, "Origin": relay.url}) as socket:
        client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(model="gpt-live", messages=[{"role": "user", "content": "hi"}])
        request_id = raw.headers["x-request-id"]
        event = await receive_until(socket, request_id)
    assert (event["model"], event["channel"], event["status"]) == ("gpt-live", "live-primary", 200)
    assert [c["channel"] for c in event["candidates"]] == ["live-primary", "live-backup"]
    assert event["attempts"] == [{"channel": "live-primary", "outcome": "ok"}]
    assert event["cost_micros"] > 0 and event["tenant_id"] == alice.tenant.pk
    assert alice.key not in json.dumps(event)


async def test_a_refused_request_is_a_decision_too(relay, alice):
    staff = await sync_to_async(User.objects.create_superuser)("watcher", "w@example.com", "a-long-password-1")
    cookie = await sync_to_async(session_cookie)(staff)
    await sync_to_async(make_price)("gpt-nowhere", "1", "2")
    channel = await sync_to_async(make_channel)("down", "http://127.0.0.1:9/v1", models=["gpt-nowhere"])
    await sync_to_async(channel_operator_set)(channel=channel, is_enabled=False, reason="maintenance")
    async with websockets.connect(socket_url(relay), additional_headers={"Cookie": cookie, "Origin": relay.url}) as socket:
        client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(model="gpt-nowhere", messages=[{"role": "user", "content": "hi"}])
        event = await receive_until(socket, refused.value.response.headers["x-request-id"])
    assert (event["status"], event["error"], event["channel"]) == (503, "no_available_channel", "")
    assert event["candidates"][0]["channel"] == "down" and event["candidates"][0]["eligible"] is False


async def _refused(url: str, headers: dict) -> bool:
    try:
        async with websockets.connect(url, additional_headers=headers) as socket:
            await asyncio.wait_for(socket.recv(), timeout=5)
    except (websockets.InvalidStatus, websockets.ConnectionClosed):
        return True
    return False


async def test_only_staff_with_view_permission_from_our_own_pages_may_watch(relay, transactional_db):
    url = socket_url(relay)
    assert await _refused(url, {"Origin": relay.url})  # not logged in
    customer = await sync_to_async(User.objects.create_user)("customer", password="a-long-password-1")
    assert await _refused(url, {"Origin": relay.url, "Cookie": await sync_to_async(session_cookie)(customer)})
    staff_without_permission = await sync_to_async(User.objects.create_user)("intern", password="a-long-password-1", is_staff=True)
    assert await _refused(url, {"Origin": relay.url, "Cookie": await sync_to_async(session_cookie)(staff_without_permission)})
    operator = await sync_to_async(User.objects.create_superuser)("op", "op@example.com", "a-long-password-1")
    cookie = await sync_to_async(session_cookie)(operator)
    assert await _refused(url, {"Origin": "https://evil.example", "Cookie": cookie})  # another site's page
    async with websockets.connect(url, additional_headers={"Origin": relay.url, "Cookie": cookie}):
        pass  # accepted


def dropped(reason: str) -> float:
    """tokenhub_live_events_dropped_total{reason} as /metrics reports it (the process registry)."""
    return REGISTRY.get_sample_value("tokenhub_live_events_dropped_total", {"reason": reason}) or 0.0


async def test_a_full_queue_drops_and_counts_instead_of_waiting(settings):
    settings.LIVE_EVENTS_QUEUE_SIZE = 2
    events.publisher_reset()  # a fresh queue of the new size for this loop
    before = dropped("queue_full")
    for n in range(5):  # nothing awaits in between: the sender cannot drain
        events.event_publish({"request_id": f"req_{n}"})
    assert dropped("queue_full") - before == 3
    assert events.events_queued() == 2
    events.publisher_reset()


def test_a_publish_without_an_event_loop_is_dropped_and_counted():
    before = dropped("no_event_loop")
    events.event_publish({"request_id": "req_sync"})
    assert dropped("no_event_loop") - before == 1


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="the Redis channel layer joins processes (the scale-out run)")
async def test_a_decision_made_by_one_web_process_reaches_a_page_open_on_another(tmp_path, alice, upstream_factory):
    from tests.relay.procs import start_web

    upstream = await sync_to_async(upstream_factory)(name="live-two", chunks=1)
    await sync_to_async(make_price)("gpt-two", "1", "2")
    await sync_to_async(make_channel)("two", upstream.url + "/v1", models=["gpt-two"])
    operator = await sync_to_async(User.objects.create_superuser)("op", "op@example.com", "a-long-password-1")
    cookie = await sync_to_async(session_cookie)(operator)
    started = []
    try:
        for name in ("web-a", "web-b"):
            started.append(await sync_to_async(start_web)(tmp_path, name))
        (_, url_a), (_, url_b) = started
        async with websockets.connect(url_b.replace("http://", "ws://") + "/" + LIVE_PATH, additional_headers={"Cookie": cookie, "Origin": url_b}) as socket:
            client = openai.AsyncOpenAI(base_url=url_a + "/v1", api_key=alice.key, max_retries=0)
            raw = await client.chat.completions.with_raw_response.create(model="gpt-two", messages=[{"role": "user", "content": "hi"}])
            event = await receive_until(socket, raw.headers["x-request-id"])
        assert (event["channel"], event["status"]) == ("two", 200)
    finally:
        for proc, _ in started:
            await sync_to_async(proc.stop)()
        await sync_to_async(connections.close_all)()  # the test database is dropped after the session
